"""Provisioning failures, preemption, bad credentials, unreachable endpoints.

(Missing environment variables: tests/core/test_config.py.)"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from batch_transcode import (
    AuthenticationError,
    ProvisioningError,
    TranscodeError,
    TranscodeSession,
)
from batch_transcode._config import RetryPolicy
from batch_transcode.testing import Faults, OfflineAzure
from batch_transcode.testing._azurite import free_port
from helpers import NOTHING_LEFT, MediaFactory, session_jobs

pytestmark = pytest.mark.azure


def _inputs(tmp_path: Path, make_media: MediaFactory, n: int = 4) -> list[Path]:
    return [make_media(tmp_path / "in" / f"clip{i}.mp4") for i in range(n)]


class _Watcher:
    """Notes how long the emulator's request log was when the emulator first showed a
    broken pool: the requests logged after that mark came after the failure was visible."""

    def __init__(self, oa: OfflineAzure) -> None:
        self.oa = oa
        self.seen_at: int | None = None  # an index into oa.batch.request_log
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set() and self.seen_at is None:
            for pool in self.oa.batch.pools():
                if pool.resize_errors or "starttaskfailed" in pool.node_states.values():
                    self.seen_at = len(self.oa.batch.request_log)
            self._stop.wait(0.01)

    def __enter__(self) -> _Watcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


@pytest.fixture
def faulty(offline: OfflineAzure) -> Iterator[OfflineAzure]:
    yield offline
    offline.set_faults(None)


@pytest.mark.parametrize("fault", ["start_task_failure", "allocation_failure"])
def test_provisioning_failure_is_raised_within_two_polls(
    faulty: OfflineAzure, tmp_path: Path, make_media: MediaFactory, fault: str
) -> None:
    faulty.set_faults(Faults(**{fault: True}))  # type: ignore[arg-type]
    session = TranscodeSession(faulty.config())
    with _Watcher(faulty) as watcher, pytest.raises(ProvisioningError) as info, session:
        session.convert(_inputs(tmp_path, make_media), output_dir=tmp_path / "out")
    assert watcher.seen_at is not None
    polls_after = [
        r for r in faulty.batch.request_log[watcher.seen_at :] if r.operation == "Jobs_GetJobTaskCounts"
    ]
    assert len(polls_after) <= 2, f"{len(polls_after)} polls after the emulator reported the failure"
    err = info.value
    assert err.pool_id
    if fault == "start_task_failure":
        assert err.stderr_tail is not None
        assert "Unable to locate package ffmpeg" in err.stderr_tail
        assert "Unable to locate package ffmpeg" in str(err)
    else:
        assert err.code == "AllocationFailed"
    assert faulty.leaks(timeout=30) == NOTHING_LEFT


def test_preempted_tasks_are_rerun(faulty: OfflineAzure, tmp_path: Path, make_media: MediaFactory) -> None:
    faulty.set_faults(Faults(preempt_rate=0.5, seed=7))
    inputs = _inputs(tmp_path, make_media, 8)
    with TranscodeSession(faulty.config(dedicated_nodes=0, spot_nodes=2)) as session:
        report = session.convert(inputs, output_dir=tmp_path / "out")
        (job_id,) = session_jobs(faulty, str(session.session_id))
        tasks = faulty.batch.tasks(job_id)
    assert report.ok, report.summary()
    assert sum(t.requeue_count for t in tasks) > 0, "the fault did not preempt anything"
    assert all(t.retry_count == 0 for t in tasks)  # requeued by the service, not retried as failures
    # the report says which tasks were requeued, and its timeline marks them
    by_id = {t.id: t for t in tasks}
    assert [r.requeues for r in report] == [by_id[str(r.task_id)].requeue_count for r in report]
    page = report.to_html()
    assert page.count("data-requeues='0'") == sum(t.requeue_count == 0 for t in tasks) < len(tasks)
    assert faulty.leaks(timeout=30) == NOTHING_LEFT


def test_wrong_key_fails_before_anything_is_created(
    offline: OfflineAzure, tmp_path: Path, make_media: MediaFactory
) -> None:
    before = len(offline.batch.request_log)
    config = offline.config(batch_key="d3Jvbmcga2V5IHdyb25nIGtleQ==")
    with pytest.raises(AuthenticationError), TranscodeSession(config) as session:
        session.convert(_inputs(tmp_path, make_media, 1), output_dir=tmp_path / "out")
    ops = {r.operation for r in offline.batch.request_log[before:]}
    assert ops == {"Pools_ListPools"}
    assert offline.leaks() == NOTHING_LEFT


def test_wrong_storage_key_fails_before_a_pool_is_created(offline: OfflineAzure) -> None:
    before = len(offline.batch.request_log)
    good = offline.env["AZURE_STORAGE_CONNECTION_STRING"]
    key = good.split("AccountKey=")[1].split(";")[0]
    bad = good.replace(key, "d3Jvbmcga2V5IHdyb25nIGtleQ==")
    with pytest.raises(AuthenticationError), TranscodeSession(offline.config(storage_connection_string=bad)):
        pass
    ops = {r.operation for r in offline.batch.request_log[before:]}
    assert "Pools_CreatePool" not in ops
    assert offline.leaks() == NOTHING_LEFT


def test_unreachable_endpoint_is_a_clear_error_within_the_retry_budget(offline: OfflineAzure) -> None:
    port = free_port()  # nothing listens there
    policy = RetryPolicy(attempts=3, timeout=10.0, wait_initial=0.0, wait_max=0.0, wait_jitter=0.0)
    config = offline.config(batch_endpoint=f"http://127.0.0.1:{port}", retry=policy)
    with pytest.raises(TranscodeError) as info, TranscodeSession(config):
        pass
    text = str(info.value)
    assert f"127.0.0.1:{port}" in text or "connect" in text.lower()
    assert offline.leaks() == NOTHING_LEFT
