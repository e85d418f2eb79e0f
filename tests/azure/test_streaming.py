"""Results stream on Azure: tasks start while inputs upload, each file is reported as its
task finishes, and completion is exact even when the service's task counts lag."""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from batch_transcode import ProgressEvent, TranscodeSession
from batch_transcode._azure import staging as staging_module
from batch_transcode.samples import decoded_duration
from batch_transcode.testing import Faults, OfflineAzure
from helpers import NOTHING_LEFT, MediaFactory, wait_until

pytestmark = pytest.mark.azure


def _inputs(tmp_path: Path, make_media: MediaFactory, n: int) -> list[Path]:
    return [make_media(tmp_path / "in" / f"clip{i:02d}.mp4") for i in range(n)]


def test_each_file_is_reported_while_other_tasks_still_run(
    offline_azure: OfflineAzure, tmp_path: Path, make_media: MediaFactory
) -> None:
    # a minute of media each: a task lasts long enough for a download to land meanwhile
    # (one-second clips finish 24 tasks in well under a second, faster than any listing)
    n = 16
    inputs = [make_media(tmp_path / "in" / f"clip{i:02d}.mp4", "long") for i in range(n)]
    completed_at_report: list[int] = []
    lock = threading.Lock()

    def progress(event: ProgressEvent) -> None:
        if event.kind == "finished":
            job_ids = [j.id for j in offline_azure.batch.jobs()]
            done = sum(t.state == "completed" for j in job_ids for t in offline_azure.batch.tasks(j))
            with lock:
                completed_at_report.append(done)

    config = offline_azure.config(dedicated_nodes=1, task_slots_per_node=2)
    with TranscodeSession(config) as session:
        report = session.convert(inputs, output_dir=tmp_path / "out", progress=progress)
    assert report.ok, report.summary()
    assert [r.status for r in report] == ["converted"] * n
    assert len(completed_at_report) == n
    # the first file was reported (downloaded) while most tasks had not finished yet
    assert completed_at_report[0] < n // 2, completed_at_report


def test_tasks_are_added_while_inputs_still_upload(
    offline_azure: OfflineAzure,
    tmp_path: Path,
    make_media: MediaFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    n = 12
    inputs = _inputs(tmp_path, make_media, n)
    before = len(offline_azure.batch.request_log)
    original = staging_module.Staging._upload
    collections_when_last_started: list[int] = []

    def collections() -> int:
        records = offline_azure.batch.request_log[before:]
        return sum(r.operation == "Tasks_CreateTaskCollection" for r in records)

    def upload(self: Any, ledger: Any, path: Path, *args: Any, **kwargs: Any) -> Any:
        if path == inputs[-1]:  # the last input waits until tasks of the others were added
            wait_until(lambda: collections() > 0, timeout=20, what="a task collection")
            collections_when_last_started.append(collections())
        return original(self, ledger, path, *args, **kwargs)

    monkeypatch.setattr(staging_module.Staging, "_upload", upload)
    with TranscodeSession(offline_azure.config(upload_concurrency=1)) as session:
        report = session.convert(inputs, output_dir=tmp_path / "out")
    assert report.ok, report.summary()
    assert collections_when_last_started and collections_when_last_started[0] >= 1
    records = offline_azure.batch.request_log[before:]
    ops = [r.operation for r in records]
    assert ops.index("Jobs_CreateJob") < ops.index("Tasks_CreateTaskCollection")
    sent = [r for r in records if r.operation == "Tasks_CreateTaskCollection"]
    assert sum(len(json.loads(r.request_body)["value"]) for r in sent) == n


def test_completion_is_exact_with_stale_and_missed_task_counts(
    offline_azure_factory: Callable[..., OfflineAzure], tmp_path: Path, make_media: MediaFactory
) -> None:
    faults = Faults(seed=3, stale_counts_seconds=2.0, missed_count_rate=0.5, missed_count_seconds=600.0)
    oa = offline_azure_factory(faults=faults)
    n = 12
    inputs = _inputs(tmp_path, make_media, n)
    with TranscodeSession(oa.config()) as session:
        report = session.convert(inputs, output_dir=tmp_path / "out")
    assert report.ok, report.summary()
    for r in report:
        assert r.status == "converted" and r.output is not None
        assert (decoded_duration(r.output) or 0) > 0.5
    counts = [r for r in oa.batch.request_log if r.operation == "Jobs_GetJobTaskCounts"]
    last = json.loads(counts[-1].response_body)["taskCounts"]
    # the run ended on the listing, while the counts still missed some completions
    assert last["completed"] < n, last
    # ... at once: the listing that read the last completion was the last or the one after
    # it (a listing under way as the last task completed), not a wait for the counts
    listings = [r for r in oa.batch.request_log if r.operation == "Tasks_ListTasks"]
    stamps = [
        dt.datetime.fromisoformat(t["stateTransitionTime"][:26].rstrip("Z") + "+00:00").timestamp()
        for r in listings
        for t in json.loads(r.response_body)["value"]
    ]
    assert len([r for r in listings if r.time >= max(stamps)]) <= 2
    assert oa.leaks(timeout=30) == NOTHING_LEFT
