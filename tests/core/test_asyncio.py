"""``async with TranscodeSession``, ``async for result in job``, ``await job`` and cancellation,
on the local backend with real ffmpeg. Plain ``asyncio.run``: no test plugin needed."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from batch_transcode import LocalConfig, SessionStateError, TranscodeSession
from helpers import partial_files

MediaFactory = Callable[..., Path]


async def until(predicate: Callable[[], object], what: str, timeout: float = 60.0) -> None:
    """Poll ``predicate`` on the loop (a generous bound, only so a broken test ends)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


def test_async_with_async_for_and_await(tmp_path: Path, make_media: MediaFactory) -> None:
    sources = [make_media(tmp_path / "in" / f"v{i}.mp4") for i in range(4)]
    silent = make_media(tmp_path / "in" / "silent.mp4", "silent")
    opened_in: list[threading.Thread] = []

    async def scenario() -> tuple[TranscodeSession, list[object], object]:
        session = TranscodeSession(LocalConfig(workers=2))
        real_open = session.open

        def open_recording() -> TranscodeSession:
            opened_in.append(threading.current_thread())
            return real_open()

        session.open = open_recording  # type: ignore[method-assign]
        async with session as s:
            assert s is session and "state=open" in repr(s)
            job = s.submit([*sources, silent], output_dir=tmp_path / "out", preset="wav")
            seen = [r async for r in job]
            report = await job
            again = await job  # awaiting a finished job gives the same report
            assert again == report
        return session, seen, report

    session, seen, report = asyncio.run(scenario())
    assert opened_in and opened_in[0] is not threading.main_thread()  # open ran off the loop
    assert "state=closed" in repr(session)
    assert sorted(str(r.source) for r in seen) == sorted(str(p) for p in [*sources, silent])  # type: ignore[attr-defined]
    assert [r.status for r in report] == ["converted"] * 4 + ["failed"]  # type: ignore[attr-defined]
    assert all((tmp_path / "out" / f"v{i}.wav").stat().st_size > 1000 for i in range(4))
    with pytest.raises(SessionStateError):
        session.submit(sources, output_dir=tmp_path / "again")


def test_the_loop_runs_while_a_job_is_awaited(tmp_path: Path, make_media: MediaFactory) -> None:
    sources = [make_media(tmp_path / "in" / f"long{i}.mp4", "long") for i in range(2)]

    async def scenario() -> list[bool]:
        states: list[bool] = []
        async with TranscodeSession(LocalConfig(workers=2)) as s:
            job = s.submit(sources, output_dir=tmp_path / "out", preset="flac")

            async def watch() -> None:
                while True:
                    states.append(job.done())
                    await asyncio.sleep(0)

            watcher = asyncio.create_task(watch())
            report = await job
            watcher.cancel()
            assert report.ok
        return states

    states = asyncio.run(scenario())
    assert states and states[0] is False  # another task ran while the job was being awaited


@pytest.mark.parametrize("how", ["await", "async for"])
def test_cancelling_the_awaiting_task_cancels_the_job(
    tmp_path: Path, make_media: MediaFactory, how: str
) -> None:
    sources = [make_media(tmp_path / "in" / f"long{i}.mp4", "long") for i in range(6)]
    out = tmp_path / "out"

    async def scenario() -> object:
        async with TranscodeSession(LocalConfig(workers=2)) as s:
            job = s.submit(sources, output_dir=out, preset="flac")

            async def consume() -> None:
                if how == "await":
                    await job
                else:
                    async for _ in job:
                        pass

            task = asyncio.create_task(consume())
            await until(lambda: partial_files(out), "ffmpeg to start writing")
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            # the cancellation reached the job, which had stopped before it propagated
            assert job.cancelled and job.done()
            assert not partial_files(out)
            return job.wait()

    report = asyncio.run(scenario())
    statuses = [r.status for r in report]  # type: ignore[attr-defined]
    assert "cancelled" in statuses and len(statuses) == 6
    assert not partial_files(out)


def test_cancelling_the_task_around_async_with_tears_down(tmp_path: Path, make_media: MediaFactory) -> None:
    sources = [make_media(tmp_path / "in" / f"long{i}.mp4", "long") for i in range(4)]
    out = tmp_path / "out"
    made: list[TranscodeSession] = []

    async def body() -> None:
        async with TranscodeSession(LocalConfig(workers=2)) as s:
            made.append(s)
            job = s.submit(sources, output_dir=out, preset="flac")
            made_job.append(job)
            await asyncio.sleep(3600)  # cancelled long before

    made_job: list[object] = []

    async def scenario() -> None:
        task = asyncio.create_task(body())
        await until(lambda: partial_files(out), "ffmpeg to start writing")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())
    assert "state=closed" in repr(made[0])
    job = made_job[0]
    assert job.done() and job.cancelled  # type: ignore[attr-defined]
    assert not partial_files(out)
