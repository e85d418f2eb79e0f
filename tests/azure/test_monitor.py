"""The job monitor with the real BatchClient against a scripted Batch endpoint."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from batch_transcode import AzureConfig, ProvisioningError, RetryPolicy, RunTimeoutError
from batch_transcode._azure._clients import make_batch_client
from batch_transcode._azure.monitor import Counts, final_states, wait_for_job
from helpers import ScriptedEndpoint

Route = Callable[[str], tuple[int, Any]]
Serve = Callable[[Route], tuple[ScriptedEndpoint, AzureConfig]]


@pytest.fixture
def serve(scripted_batch: Callable[..., tuple[ScriptedEndpoint, AzureConfig]]) -> Serve:
    """``serve(route)``: a scripted Batch endpoint answering ``route(path)``, and a config
    for it that polls fast."""

    def start(route: Route) -> tuple[ScriptedEndpoint, AzureConfig]:
        return scripted_batch(
            lambda request: route(request.path),
            poll_interval=0.01,
            poll_interval_max=0.05,
            retry=RetryPolicy(attempts=2),
        )

    return start


def _watch(config: AzureConfig, total: int, **kwargs: Any) -> bool:
    """``wait_for_job`` on job "j" of pool "p" with a client of ``config``."""
    kwargs.setdefault("deadline", float("inf"))
    kwargs.setdefault("cancel", threading.Event())
    client = make_batch_client(config, retry_total=0)
    return wait_for_job(client, job_id="j", pool_id="p", total=total, config=config, **kwargs)


def counts(completed: int, total: int, failed: int = 0) -> dict[str, Any]:
    c = {
        "active": total - completed,
        "running": 0,
        "completed": completed,
        "succeeded": completed - failed,
        "failed": failed,
    }
    return {"taskCounts": c, "taskSlotCounts": c}


HEALTHY_POOL = {"id": "p", "state": "active", "allocationState": "steady", "currentDedicatedNodes": 1}
IDLE_NODES = {"value": [{"id": "n1", "state": "running"}]}


def test_polls_counts_until_done_and_checks_the_pool_only_when_stalled(
    serve: Serve,
) -> None:
    progress = iter([0, 0, 0, 3, 7, 10])

    def route(path: str) -> tuple[int, Any]:
        if path.endswith("/taskcounts"):
            return 200, counts(next(progress), 10, failed=1)
        if path == "/pools/p":
            return 200, HEALTHY_POOL
        if path == "/pools/p/nodes":
            return 200, IDLE_NODES
        return 404, {"code": "NotFound", "message": {"lang": "en-US", "value": path}}

    scripted, config = serve(route)
    seen: list[Counts] = []
    done = _watch(config, 10, on_progress=seen.append)
    assert done
    assert [c.completed for c in seen] == [0, 3, 7, 10]
    assert scripted.paths.count("/jobs/j/taskcounts") == 6
    assert not any(p.endswith("/tasks") for p in scripted.paths)  # never a task listing
    assert scripted.paths.count("/pools/p") == 3  # first poll + the two stalled ones


def test_failed_start_task_raises_at_once_with_its_stderr(
    serve: Serve,
) -> None:
    def route(path: str) -> tuple[int, Any]:
        if path.endswith("/taskcounts"):
            return 200, counts(0, 4)
        if path == "/pools/p":
            return 200, HEALTHY_POOL
        if path == "/pools/p/nodes":
            return 200, {
                "value": [
                    {
                        "id": "n1",
                        "state": "starttaskfailed",
                        "startTaskInfo": {
                            "state": "completed",
                            "startTime": "2026-11-29T04:00:00Z",
                            "retryCount": 2,
                            "exitCode": 100,
                            "failureInfo": {
                                "category": "usererror",
                                "code": "FailureExitCode",
                                "message": "x",
                            },
                        },
                    }
                ]
            }
        if path == "/pools/p/nodes/n1/files/startup/stderr.txt":
            return 200, "Reading package lists...\nE: Unable to locate package ffmpeg\n"
        return 404, {"code": "NotFound", "message": {"lang": "en-US", "value": path}}

    _, config = serve(route)
    with pytest.raises(ProvisioningError) as info:
        _watch(config, 4)
    err = info.value
    assert err.pool_id == "p"
    assert err.stderr_tail is not None and "Unable to locate package ffmpeg" in err.stderr_tail
    assert "exit code 100" in str(err)


def test_allocation_error_raises(serve: Serve) -> None:
    def route(path: str) -> tuple[int, Any]:
        if path.endswith("/taskcounts"):
            return 200, counts(0, 4)
        if path == "/pools/p":
            return 200, {
                "id": "p",
                "allocationState": "steady",
                "currentDedicatedNodes": 0,
                "resizeErrors": [{"code": "AccountCoreQuotaReached", "message": "quota of 0 cores reached"}],
            }
        return 404, {"code": "NotFound", "message": {"lang": "en-US", "value": path}}

    _, config = serve(route)
    with pytest.raises(ProvisioningError, match="AccountCoreQuotaReached") as info:
        _watch(config, 4)
    assert info.value.code == "AccountCoreQuotaReached"


def test_timeout_and_cancel(serve: Serve) -> None:
    def route(path: str) -> tuple[int, Any]:
        if path.endswith("/taskcounts"):
            return 200, counts(1, 4)
        if path == "/pools/p":
            return 200, HEALTHY_POOL
        return 200, IDLE_NODES

    _, config = serve(route)
    with pytest.raises(RunTimeoutError, match="1/4 done"):
        _watch(config, 4, deadline=time.monotonic() + 0.2)
    cancel = threading.Event()
    cancel.set()
    assert not _watch(config, 4, cancel=cancel)


def test_final_listing_is_one_request_with_select(
    serve: Serve,
) -> None:
    def route(path: str) -> tuple[int, Any]:
        return 200, {
            "value": [
                {
                    "id": "t000000",
                    "state": "completed",
                    "executionInfo": {"retryCount": 0, "requeueCount": 0, "exitCode": 0, "result": "success"},
                },
                {
                    "id": "t000001",
                    "state": "completed",
                    "executionInfo": {
                        "retryCount": 2,
                        "requeueCount": 0,
                        "exitCode": 1,
                        "result": "failure",
                        "failureInfo": {"category": "usererror", "code": "FailureExitCode", "message": "1"},
                    },
                },
            ]
        }

    scripted, config = serve(route)
    outcomes = final_states(make_batch_client(config, retry_total=0), "j", config)
    assert scripted.paths == ["/jobs/j/tasks"]
    assert outcomes["t000000"].succeeded
    assert not outcomes["t000001"].succeeded
    assert outcomes["t000001"].exit_code == 1
    assert outcomes["t000001"].failure_code == "FailureExitCode"
