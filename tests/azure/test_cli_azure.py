"""The command line against OfflineAzure: convert with Azure settings, plan, sessions, cleanup,
attach, and the asyncio API with cancellation. Credentials come from the ``AZURE_*`` variables."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from batch_transcode import TranscodeSession
from batch_transcode._azure._clients import make_batch_client
from batch_transcode._azure.builders import STAGED_FFMPEG_FILE
from batch_transcode._cli import main
from batch_transcode.testing import Faults, OfflineAzure
from helpers import NOTHING_LEFT, interruptible, leave_session_behind, partial_files, wait_until

pytestmark = pytest.mark.azure

MediaFactory = Callable[..., Path]
SCHEMA = json.loads((Path(__file__).resolve().parents[2] / "docs" / "report.schema.json").read_text())


@pytest.fixture(scope="module")
def offline() -> Iterator[OfflineAzure]:
    with OfflineAzure() as oa:
        yield oa


@pytest.fixture
def cli(
    offline: OfflineAzure, point_env_at: Callable[[OfflineAzure], None], capsys: pytest.CaptureFixture[str]
) -> Callable[..., tuple[int, str, str]]:
    """``cli(*argv) -> (exit code, stdout, stderr)``: ``batch-transcode`` in this process."""
    point_env_at(offline)

    def run(*argv: str | Path) -> tuple[int, str, str]:
        capsys.readouterr()
        code = main([str(a) for a in argv])
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


def _sessions(cli: Callable[..., tuple[int, str, str]]) -> dict[str, dict[str, Any]]:
    code, out, err = cli("sessions", "--json")
    assert code == 0, err
    return {s["session"]: s for s in json.loads(out)}


def test_convert_with_azure_settings_keep_pool_then_sessions_and_cleanup(
    offline: OfflineAzure,
    cli: Callable[..., tuple[int, str, str]],
    tmp_path: Path,
    make_media: MediaFactory,
    ffmpeg_exe: str,
) -> None:
    inputs = [make_media(tmp_path / "in" / f"talk {i}.mp4") for i in range(3)]
    make_media(tmp_path / "in" / "silent.mp4", "silent")
    before = set(_sessions(cli))
    code, out, err = cli(
        "convert", tmp_path / "in", "-o", tmp_path / "out", "--backend", "azure", "--no-progress",
        "--nodes", "1", "--spot-nodes", "1", "--vm-size", "Standard_D4s_v5", "--keep-pool",
        "--session-timeout", "30m", "--ffmpeg-from", f"staged={ffmpeg_exe}", "--json", "-",
    )  # fmt: skip
    assert code == 1, err  # silent.mp4 has no audio
    report = json.loads(out)
    jsonschema.validate(report, SCHEMA)
    by_name = {Path(f["source"]).name: f for f in report["files"]}
    assert report["summary"]["converted"] == 3 and report["summary"]["failed"] == 1
    assert by_name["silent.mp4"]["status"] == "failed" and by_name["silent.mp4"]["task_id"]
    assert "no audio stream" in by_name["silent.mp4"]["error"]
    for path in inputs:
        entry = by_name[path.name]
        assert (
            entry["status"] == "converted" and entry["task_id"] and Path(entry["output"]).stat().st_size > 0
        )
    assert "3/4 converted" in err  # the text went to stderr

    # --keep-pool: the pool stays, with the size and nodes asked for; the rest is gone
    (new,) = set(_sessions(cli)) - before
    session = _sessions(cli)[new]
    assert session["jobs"] == [] and session["containers"] == []
    (pool,) = session["pools"]
    got = make_batch_client(offline.config()).get_pool(pool["id"])
    assert got.vm_size.lower() == "standard_d4s_v5"
    assert (got.target_dedicated_nodes, got.target_low_priority_nodes) == (1, 1)
    staged = [f.file_path for f in got.start_task.resource_files or []]
    assert staged == [STAGED_FFMPEG_FILE]  # --ffmpeg-from staged=...: the binary, not apt
    assert session["cleanup"] == f"batch-transcode cleanup --session {new} --older-than 0s"
    assert session["attach"] is None  # no job left to collect

    code, text, err = cli("sessions")
    assert code == 0 and new in text and f"pool {pool['id']}" in text and session["cleanup"] in text

    # cleanup's default age (2 h) skips the young pool, and says so
    code, text, err = cli("cleanup", "--dry-run", "--session", new)
    assert code == 0, err
    assert text.splitlines() == [
        "nothing to clean up (1 resource of 1 session younger than 2h skipped)",
        "they may belong to sessions still running: 'batch-transcode sessions' lists them",
    ]
    code, text, err = cli("cleanup", "--older-than", "soon")
    assert code == 2 and "--older-than 'soon'" in err and not text

    code, text, err = cli(*session["cleanup"].split()[1:])
    assert code == 0, err
    first, *rest = text.splitlines()
    assert first.startswith(f"removed pool {pool['id']} (session {new}, created ")
    assert rest == ["removed 1 resource of 1 session"]
    wait_until(lambda: new not in _sessions(cli), what="the kept pool to go")


def test_plan_on_azure_with_a_price(
    cli: Callable[..., tuple[int, str, str]], tmp_path: Path, make_media: MediaFactory
) -> None:
    for i in range(5):
        make_media(tmp_path / "in" / f"{i}.mp4")
    code, out, err = cli(
        "plan", tmp_path / "in", "--backend", "azure", "--nodes", "3", "--vm-size", "Standard_D8s_v5",
        "--price-per-node-hour", "0.5", "--json", "-",
    )  # fmt: skip
    assert code == 0, err
    plan = json.loads(out)
    assert plan["backend"] == "azure" and plan["files"] == 5 and plan["nodes"] == 3
    assert plan["vm_size"] == "Standard_D8s_v5" and plan["bytes_to_stage"] > 0
    assert plan["estimated_cost"] == round(plan["node_hours"] * 0.5, 2) > 0
    assert "estimated cost" in err and "per node-hour" in err
    code, text, _ = cli("plan", tmp_path / "in", "--backend", "azure", "--autoscale", "--max-nodes", "2")
    assert code == 0 and "2 x Standard_D2s_v5" in text


def test_sessions_lists_a_crashed_session_and_attach_collects_it(
    offline: OfflineAzure, cli: Callable[..., tuple[int, str, str]], tmp_path: Path, make_media: MediaFactory
) -> None:
    inputs = [make_media(tmp_path / "in" / f"day{i % 2}" / f"talk {i}.mp4") for i in range(3)]
    session_id = leave_session_behind(offline, inputs, tmp_path / "child-out")

    listed = _sessions(cli)[session_id]
    (job,) = listed["jobs"]
    assert job == {"id": f"{session_id}-job", "tasks_done": 3, "tasks_total": 3}
    assert len(listed["pools"]) == 1 and len(listed["containers"]) == 2
    assert listed["age_seconds"] >= 0
    assert listed["attach"] == f"batch-transcode attach {session_id} -o OUTPUT_DIR"
    code, text, _ = cli("sessions")
    assert f"job {session_id}-job: 3/3 task(s) done" in text and listed["attach"] in text

    out = tmp_path / "collected"
    page = tmp_path / "attached.html"
    code, stdout, err = cli("attach", session_id, "-o", out, "--no-progress", "--json", "-", "--html", page)
    assert code == 0, err
    report = json.loads(stdout)
    jsonschema.validate(report, SCHEMA)
    assert report["summary"]["total"] == 3 and report["summary"]["failed"] == 0
    assert report["usage"]["tasks"] == 3 and len(report["usage"]["nodes"]) >= 1  # the adopted pool's
    assert page.read_text(encoding="utf-8").count("<rect class='bar converted'") == 3
    for i in range(3):
        assert (out / f"day{i % 2}" / f"talk {i}.mp3").stat().st_size > 0
    wait_until(lambda: session_id not in _sessions(cli), what="the attached session's resources to go")

    # attaching again: nothing there any more, a usage error that says so
    code, _, err = cli("attach", session_id, "-o", tmp_path / "again")
    assert code == 2 and session_id in err


def test_attach_and_sessions_need_the_azure_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in list(os.environ):
        if name.startswith("AZURE_"):
            monkeypatch.delenv(name)
    assert main(["sessions"]) == 2
    assert "AZURE_BATCH_ENDPOINT" in capsys.readouterr().err
    assert main(["attach", "bt-20260101t0000-deadbeef", "-o", str(tmp_path)]) == 2
    assert "AZURE_BATCH_ENDPOINT" in capsys.readouterr().err
    assert main(["plan", str(tmp_path), "--backend", "azure"]) == 2
    assert "AZURE_BATCH_ENDPOINT" in capsys.readouterr().err


def test_cancelling_an_awaited_azure_job_leaves_nothing(
    offline: OfflineAzure, tmp_path: Path, make_media: MediaFactory
) -> None:
    inputs = [make_media(tmp_path / "in" / f"long{i}.mp4", "long") for i in range(6)]
    out = tmp_path / "out"
    assert offline.leaks() == NOTHING_LEFT

    async def scenario() -> Any:
        async with TranscodeSession(offline.config(dedicated_nodes=1, task_slots_per_node=1)) as s:
            job = s.submit(inputs, output_dir=out, preset="flac")
            task = asyncio.create_task(_await(job))
            await asyncio.to_thread(
                wait_until,
                lambda: any(
                    t.state == "running" for j in offline.batch.jobs() for t in offline.batch.tasks(j.id)
                ),
                timeout=120,
                what="a task to run",
            )
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert job.done() and job.cancelled
            return job.wait()

    report = asyncio.run(scenario())
    assert "cancelled" in [r.status for r in report]
    assert offline.leaks(timeout=60) == NOTHING_LEFT
    assert not partial_files(out)


async def _await(job: Any) -> Any:
    return await job


def test_cancelling_async_with_while_it_opens_leaves_nothing(offline: OfflineAzure) -> None:
    """The cancellation lands while the pool is being created (a slow Create Pool): the
    opening finishes in its thread, then everything it created is removed."""
    from batch_transcode.testing import Faults

    entered: list[bool] = []

    async def use() -> None:
        async with TranscodeSession(offline.config()):
            entered.append(True)
            await asyncio.Event().wait()

    async def scenario() -> None:
        task = asyncio.create_task(use())
        await asyncio.to_thread(wait_until, offline.containers, timeout=60, what="the session's containers")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    assert offline.leaks() == NOTHING_LEFT
    offline.set_faults(Faults(slow_rate=1.0, slow_seconds=3.0, operations=("Pools_CreatePool",)))
    try:
        asyncio.run(scenario())
    finally:
        offline.set_faults(None)
    assert not entered  # cancelled while opening: the body never ran
    assert offline.leaks(timeout=60) == NOTHING_LEFT


def test_ctrl_c_during_an_azure_convert_exits_130_and_leaves_nothing(
    offline: OfflineAzure, tmp_path: Path, make_media: MediaFactory
) -> None:
    for i in range(4):
        make_media(tmp_path / "in" / f"long{i}.mp4", "long")
    assert offline.leaks() == NOTHING_LEFT
    # The client learns of finished tasks only from counts and listings: slowed, they keep
    # the run going for seconds after a task starts, so that the interrupt always lands
    # mid-run (on a loaded machine the four short tasks could otherwise all finish first).
    offline.set_faults(
        Faults(slow_rate=1.0, slow_seconds=3.0, operations=("Jobs_GetJobTaskCounts", "Tasks_ListTasks"))
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "batch_transcode", "convert", str(tmp_path / "in"), "--to", "flac",
         "-o", str(tmp_path / "out"), "--backend", "azure", "--nodes", "1", "--no-progress",
         "--json", str(tmp_path / "report.json")],
        env={**os.environ, **offline.env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=interruptible,
    )  # fmt: skip
    try:
        wait_until(
            lambda: any(
                t.state == "running" for j in offline.batch.jobs() for t in offline.batch.tasks(j.id)
            ),
            timeout=120,
            what="a task to run",
        )
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
        offline.set_faults(None)
    assert proc.returncode == 130, err
    assert "interrupted" in err
    assert not (tmp_path / "report.json").exists()  # no report of a run that did not finish
    assert offline.leaks(timeout=60) == NOTHING_LEFT


def test_attach_under_asyncio(offline: OfflineAzure, tmp_path: Path, make_media: MediaFactory) -> None:
    inputs = [make_media(tmp_path / "in" / f"talk {i}.mp4") for i in range(2)]
    session_id = leave_session_behind(offline, inputs, tmp_path / "child-out")
    out = tmp_path / "out"

    async def scenario() -> Any:
        job = await asyncio.to_thread(TranscodeSession.attach, session_id, offline.config(), output_dir=out)
        async with job:  # leaving closes the attaching session, off the loop
            seen = [r.status async for r in job]
            report = await job
        assert "state=closed" in repr(job.session)
        return seen, report

    seen, report = asyncio.run(scenario())
    assert len(seen) == 2 and report.ok, report.summary()
    assert sorted(p.name for p in out.glob("*.mp3")) == ["talk 0.mp3", "talk 1.mp3"]
    assert offline.leaks(timeout=60) == NOTHING_LEFT
