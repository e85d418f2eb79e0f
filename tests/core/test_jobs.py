"""submit / wait / as_completed / cancel on the local backend."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from batch_transcode import (
    PRESETS,
    FileResult,
    LocalConfig,
    ProgressEvent,
    RunTimeoutError,
    TranscodeJob,
    TranscodeSession,
)
from batch_transcode._backend import RunRequest
from batch_transcode._naming import WorkItem, plan_work
from batch_transcode._teardown import Teardown


def test_submit_returns_at_once_and_wait_gives_the_report(
    tmp_path: Path, make_media: Callable[..., Path]
) -> None:
    sources = [make_media(tmp_path / "in" / f"v{i}.mp4") for i in range(4)]
    release = threading.Event()  # set once the test holds the job
    held: list[bool] = []

    def hold(event: ProgressEvent) -> None:
        # A file converts only once its "started" event is delivered, so while events
        # are held no file can finish: the job is still running when submit returns.
        held.append(release.wait(timeout=60))

    with TranscodeSession(LocalConfig(workers=2)) as s:
        job = s.submit(sources, output_dir=tmp_path / "out", preset="flac", progress=hold)
        try:
            assert isinstance(job, TranscodeJob)
            assert not job.done()
            assert job.progress.done == 0 and job.progress.remaining == 4
        finally:
            release.set()
        report = job.wait()
    assert held and all(held), "an event was delivered only after waiting for submit to return"
    assert job.done() and report.ok
    assert [r.source for r in report] == sources
    assert job.progress.done == 4 and job.progress.succeeded == 4


def test_as_completed_yields_every_result_once(tmp_path: Path, make_media: Callable[..., Path]) -> None:
    sources = [make_media(tmp_path / f"v{i}.mp4") for i in range(5)]
    silent = make_media(tmp_path / "silent.mp4", "silent")
    with TranscodeSession(LocalConfig(workers=2)) as s:
        job = s.submit([*sources, silent], output_dir=tmp_path / "out")
        seen = list(job.as_completed(timeout=60))
    assert sorted(str(r.source) for r in seen) == sorted(str(p) for p in [*sources, silent])
    assert [r.ok for r in seen].count(False) == 1


def test_cancel_stops_running_work_and_leaves_no_partials(
    tmp_path: Path, make_media: Callable[..., Path]
) -> None:
    sources = [make_media(tmp_path / "in" / f"long{i}.mp4", "long") for i in range(8)]
    out = tmp_path / "out"
    finished: list[FileResult] = []

    def collect(event: ProgressEvent) -> None:
        if event.result is not None:
            finished.append(event.result)

    with TranscodeSession(LocalConfig(workers=2)) as s:
        job = s.submit(sources, output_dir=out, preset="flac", progress=collect)
        deadline = time.monotonic() + 30  # a bound on waiting for ffmpeg to start, not a check
        while not list(out.glob(".bt-*")) and time.monotonic() < deadline:
            time.sleep(0.01)
        job.cancel()
        report = job.wait(timeout=30)
    assert job.cancelled
    assert not report.ok
    assert report.cancelled and not report.failed
    assert not list(out.glob(".bt-*"))
    assert len(report) == 8
    # the backend reported every file, those it never started too, each once
    assert sorted(str(r.source) for r in finished) == sorted(str(p) for p in sources)
    assert job.progress.cancelled == len(report.cancelled) and job.progress.failed == 0
    assert f"{len(report.cancelled)} cancelled" in str(job.progress)


def _items(tmp_path: Path, count: int) -> list[WorkItem]:
    sources = []
    for i in range(count):
        source = tmp_path / f"{i}.mp4"
        source.write_bytes(b"x")
        sources.append(source)
    return plan_work(sources, tmp_path / "out", ["mp3"])


def _job(items: list[WorkItem], run: Callable[[RunRequest], None], session: TranscodeSession) -> TranscodeJob:
    return TranscodeJob(
        items,
        {},
        run,
        presets=[PRESETS["mp3"]],
        teardown=Teardown(),
        session=session,
        progress=None,
        show_progress=False,
        desc="test",
    ).start()


def test_results_reach_the_job_only_through_progress(tmp_path: Path) -> None:
    items = _items(tmp_path, 3)
    seen: list[RunRequest] = []

    def run(request: RunRequest) -> None:  # reports one file, then stops
        seen.append(request)
        request.progress.finished(FileResult.converted(items[1].source, items[1].outputs[0]))

    session = TranscodeSession(LocalConfig())
    job = _job(items, run, session)
    report = job.wait(timeout=60)
    (request,) = seen
    assert request.items == tuple(items) and [p.name for p in request.presets] == ["mp3"]
    assert job.session is session
    assert [r.status for r in report] == ["failed", "converted", "failed"]
    assert {r.error for r in report.failed} == {"not run: the job stopped early"}
    assert job.progress.failed == 2 and job.progress.succeeded == 1


def test_a_cancelled_job_marks_what_was_not_reported_as_cancelled(tmp_path: Path) -> None:
    items = _items(tmp_path, 2)
    running, release = threading.Event(), threading.Event()

    def run(request: RunRequest) -> None:
        running.set()
        release.wait(timeout=60)
        request.progress.finished(FileResult.converted(items[0].source, items[0].outputs[0]))
        request.progress.finished(FileResult.converted(items[0].source, items[0].outputs[0]))  # again
        assert request.cancel.is_set()

    job = _job(items, run, TranscodeSession(LocalConfig()))
    assert running.wait(timeout=60)
    job.cancel()
    release.set()
    report = job.wait(timeout=60)
    assert [r.status for r in report] == ["converted", "cancelled"]  # the second report is ignored
    assert [r.source for r in job.as_completed(timeout=60)] == [i.source for i in items]


def test_wait_timeout_raises_and_the_job_keeps_running(
    tmp_path: Path, make_media: Callable[..., Path]
) -> None:
    sources = [make_media(tmp_path / f"long{i}.mp4", "long") for i in range(6)]
    with TranscodeSession(LocalConfig(workers=1)) as s:
        job = s.submit(sources, output_dir=tmp_path / "out", preset="flac")
        with pytest.raises(RunTimeoutError, match="still running"):
            job.wait(timeout=0.01)
        assert job.wait().ok


def test_several_jobs_share_one_session(tmp_path: Path, make_media: Callable[..., Path]) -> None:
    a = [make_media(tmp_path / "a" / f"{i}.mp4") for i in range(3)]
    b = [make_media(tmp_path / "b" / f"{i}.mp4") for i in range(3)]
    with TranscodeSession(LocalConfig(workers=2)) as s:
        job_a = s.submit(a, output_dir=tmp_path / "out-a")
        job_b = s.submit(b, output_dir=tmp_path / "out-b", preset="wav")
        assert job_a.wait().ok and job_b.wait().ok
    assert len(list((tmp_path / "out-b").glob("*.wav"))) == 3


def test_leaving_the_session_cancels_running_jobs(tmp_path: Path, make_media: Callable[..., Path]) -> None:
    sources = [make_media(tmp_path / f"long{i}.mp4", "long") for i in range(8)]
    with TranscodeSession(LocalConfig(workers=2)) as s:
        job = s.submit(sources, output_dir=tmp_path / "out", preset="flac")
    assert job.done() and job.cancelled
    assert not list((tmp_path / "out").glob(".bt-*"))


def test_progress_bar_follows_counts_without_double_counting() -> None:
    from batch_transcode._progress import ProgressSink

    sink = ProgressSink(3, bar=True)
    sink.counts(2, 1)
    assert sink._bar.n == 2
    for name in ("a", "b", "c"):
        status = "failed" if name == "b" else "cancelled" if name == "c" else "converted"
        sink.finished(FileResult(source=Path(name), output=None, status=status, error="x"))
    assert sink._bar.n == 3 and sink.done == 3 and sink.failed == 1 and sink.cancelled == 1
    sink.close()
