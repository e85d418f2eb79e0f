"""Ctrl-C in each phase of an Azure run: a real KeyboardInterrupt in the main thread.

Each test wraps one phase function only to *schedule* the interrupt
(``_thread.interrupt_main()``) at the right moment; the phase itself runs unchanged.
After the session exits, nothing of it may remain in the emulator or in Azurite.
"""

from __future__ import annotations

import _thread
import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from batch_transcode import TranscodeSession
from batch_transcode._azure import opened as opened_module
from batch_transcode._azure import run as run_module
from batch_transcode._azure import staging as staging_module
from batch_transcode._azure import submit as submit_module
from batch_transcode._job import TranscodeJob
from batch_transcode.testing import Faults, OfflineAzure
from helpers import NOTHING_LEFT, MediaFactory, session_jobs

pytestmark = pytest.mark.azure

FILES = 12


#: Set when the main thread has turned the interrupt into a cancel of the job.
_cancelled = threading.Event()


@pytest.fixture(autouse=True)
def _see_cancel(monkeypatch: pytest.MonkeyPatch) -> None:
    _cancelled.clear()
    original = TranscodeJob.cancel

    def cancel(self: TranscodeJob) -> None:
        original(self)
        _cancelled.set()

    monkeypatch.setattr(TranscodeJob, "cancel", cancel)


def _interrupt() -> None:
    """Ctrl-C now, and hold the phase until the main thread has seen it (as a phase that
    lasts longer than the main thread's 0.2 s wait would)."""
    _thread.interrupt_main()
    _cancelled.wait(10)


def _interrupt_after(fn: Callable[..., Any], log: list[str], name: str) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        result = fn(*args, **kwargs)
        log.append(name)
        _thread.interrupt_main()  # open() runs in the main thread: it arrives at once
        return result

    return wrapper


def _interrupt_before(fn: Callable[..., Any], log: list[str], name: str) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if name not in log:
            log.append(name)
            _interrupt()
        return fn(*args, **kwargs)

    return wrapper


def _interrupted(
    oa: OfflineAzure, tmp_path: Path, make_media: MediaFactory, **overrides: Any
) -> tuple[Any, BaseException]:
    """Convert; the patched phase interrupts; return the session and the interrupt."""
    assert oa.leaks() == NOTHING_LEFT
    inputs = [make_media(tmp_path / "in" / f"clip{i:02d}.mp4") for i in range(FILES)]
    session = TranscodeSession(oa.config(**overrides))
    with pytest.raises(KeyboardInterrupt) as info, session:
        session.convert(inputs, output_dir=tmp_path / "out")
    return session, info.value


def _run_interrupted(oa: OfflineAzure, tmp_path: Path, make_media: MediaFactory, **overrides: Any) -> Any:
    return _interrupted(oa, tmp_path, make_media, **overrides)[0]


def test_interrupt_while_staging(
    offline: OfflineAzure, tmp_path: Path, make_media: MediaFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    fired: list[str] = []
    uploads: list[Path] = []
    interrupting = _interrupt_before(staging_module.Staging._upload, fired, "upload")

    def counted(self: Any, ledger: Any, path: Path, *args: Any, **kwargs: Any) -> Any:
        uploads.append(path)
        time.sleep(0.3)  # an upload of real size takes a while
        return interrupting(self, ledger, path, *args, **kwargs)

    monkeypatch.setattr(staging_module.Staging, "_upload", counted)
    before = len(offline.batch.request_log)
    _run_interrupted(offline, tmp_path, make_media, upload_concurrency=2)
    assert fired == ["upload"]
    assert len(uploads) <= 5 < FILES, "no upload may start once the run is cancelled"
    assert offline.leaks(timeout=30) == NOTHING_LEFT
    # a task is added only for an input that landed, and none once the job is being removed
    log = offline.batch.request_log[before:]
    ops = [r.operation for r in log]
    collections = [i for i, op in enumerate(ops) if op == "Tasks_CreateTaskCollection"]
    added = sum(len(json.loads(log[i].request_body)["value"]) for i in collections)
    assert added <= len(uploads)
    assert all(i < ops.index("Jobs_DeleteJob") for i in collections)


def test_interrupt_during_pool_creation(
    offline: OfflineAzure, tmp_path: Path, make_media: MediaFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    fired: list[str] = []
    monkeypatch.setattr(
        opened_module,
        "create_session_pool",
        _interrupt_after(opened_module.create_session_pool, fired, "pool"),
    )
    session = _run_interrupted(offline, tmp_path, make_media)
    assert fired == ["pool"]
    assert session_jobs(offline, str(session.session_id)) == []  # it never got as far as a job
    assert offline.leaks(timeout=30) == NOTHING_LEFT


def test_interrupt_while_submitting(
    offline: OfflineAzure, tmp_path: Path, make_media: MediaFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    fired: list[str] = []
    original = submit_module._submit_chunk
    monkeypatch.setattr(submit_module, "_submit_chunk", _interrupt_before(original, fired, "submit"))
    before = len(offline.batch.request_log)
    _run_interrupted(offline, tmp_path, make_media)
    assert fired == ["submit"]
    assert offline.leaks(timeout=30) == NOTHING_LEFT
    # the collection that saw the cancel was not sent, nor any after it
    ops = [r.operation for r in offline.batch.request_log[before:]]
    assert "Tasks_CreateTaskCollection" not in ops


def test_interrupt_while_monitoring(
    offline: OfflineAzure, tmp_path: Path, make_media: MediaFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    fired: list[str] = []
    original = run_module.job_counts

    def job_counts(*args: Any, **kwargs: Any) -> Any:
        counts = original(*args, **kwargs)
        if not fired and counts.running:  # watching a job that has work under way
            fired.append("monitor")
            _thread.interrupt_main()  # not waiting here: the watch's own wait sees it
        return counts

    monkeypatch.setattr(run_module, "job_counts", job_counts)
    before = len(offline.batch.request_log)
    session = _run_interrupted(offline, tmp_path, make_media, dedicated_nodes=1, task_slots_per_node=1)
    assert fired == ["monitor"]
    assert offline.leaks(timeout=30) == NOTHING_LEFT
    # the watch stopped: it read no finished task after the job was deleted
    ops = [r.operation for r in offline.batch.request_log[before:]]
    assert "Tasks_ListTasks" not in ops[ops.index("Jobs_DeleteJob") :]
    assert session_jobs(offline, str(session.session_id))
    assert len(list((tmp_path / "out").rglob("*.mp3"))) < FILES


def test_interrupt_while_downloading(
    offline: OfflineAzure, tmp_path: Path, make_media: MediaFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    fired: list[str] = []
    interrupting = _interrupt_before(staging_module.Staging.download, fired, "download")

    def slow(self: Any, item: Any) -> Any:
        time.sleep(0.3)  # a download of real size takes a while
        return interrupting(self, item)

    monkeypatch.setattr(staging_module.Staging, "download", slow)
    _run_interrupted(offline, tmp_path, make_media, download_concurrency=2)
    assert fired == ["download"]
    assert len(list((tmp_path / "out").rglob("*.mp3"))) <= 5 < FILES, "no download may start once cancelled"
    assert offline.leaks(timeout=30) == NOTHING_LEFT
    # no partial file is left behind under the output folder
    assert not list((tmp_path / "out").rglob("*.part"))


def test_interrupt_with_failing_deletes_names_what_remains(
    offline: OfflineAzure,
    tmp_path: Path,
    make_media: MediaFactory,
    monkeypatch: pytest.MonkeyPatch,
    run_cleanup: Callable[..., int],
) -> None:
    fired: list[str] = []
    original = run_module.job_counts

    def job_counts(*args: Any, **kwargs: Any) -> Any:
        if not fired:
            deletes = frozenset({"Jobs_DeleteJob", "Pools_DeletePool"})
            offline.set_faults(Faults(error_rate=1.0, operations=deletes))
            fired.append("monitor")
            _thread.interrupt_main()
        return original(*args, **kwargs)

    monkeypatch.setattr(run_module, "job_counts", job_counts)
    try:
        session, interrupt = _interrupted(offline, tmp_path, make_media)
        notes = "\n".join(getattr(interrupt, "__notes__", []))
    finally:
        offline.set_faults(None)
    assert fired == ["monitor"]
    session_id = str(session.session_id)
    pool_id, job_ids = f"{session_id}-pool", session_jobs(offline, session_id)
    assert f"pool {pool_id}" in notes
    assert job_ids[0] in notes
    command = f"batch-transcode cleanup --session {session_id} --older-than 0s"
    assert command in notes
    remaining = offline.leaks()
    assert remaining["pools"] == [pool_id] and remaining["jobs"] == job_ids
    # the command it printed removes them
    assert run_cleanup(offline, session_id) == 0
    assert offline.leaks(timeout=30) == NOTHING_LEFT
