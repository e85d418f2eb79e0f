"""The job monitor's reads (pool health, finished tasks) with the real BatchClient against a
scripted Batch endpoint. The watch loop itself is tested end to end in test_streaming.py."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
from azure.batch import models as bm

from batch_transcode import AzureConfig, ProvisioningError, RetryPolicy
from batch_transcode._azure._clients import make_batch_client
from batch_transcode._azure.monitor import TASK_SELECT, check_pool, list_finished
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


def _check(config: AzureConfig) -> None:
    """``check_pool`` on pool "p" with a client of ``config``."""
    check_pool(make_batch_client(config, retry_total=0), "p", config)


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


def test_a_healthy_pool_passes(serve: Serve) -> None:
    def route(path: str) -> tuple[int, Any]:
        if path == "/pools/p":
            return 200, HEALTHY_POOL
        if path == "/pools/p/nodes":
            return 200, IDLE_NODES
        return 404, {"code": "NotFound", "message": {"lang": "en-US", "value": path}}

    scripted, config = serve(route)
    _check(config)
    assert scripted.paths == ["/pools/p", "/pools/p/nodes"]


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
        _check(config)
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
        _check(config)
    assert info.value.code == "AccountCoreQuotaReached"


def test_finished_tasks_are_one_filtered_selected_listing(
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
    since = dt.datetime(2026, 12, 1, 12, 0, 0, 250000, tzinfo=dt.UTC)
    client = make_batch_client(config, retry_total=0)
    outcomes = {o.task_id: o for o in list_finished(client, "j", config, since)}
    assert scripted.paths == ["/jobs/j/tasks"]
    query = scripted.requests[0].query
    assert query["$filter"] == [
        "state eq 'completed' and stateTransitionTime ge DateTime'2026-12-01T12:00:00.250Z'"
    ]
    assert query["$select"] == [",".join(TASK_SELECT)]
    assert outcomes["t000000"].succeeded
    assert outcomes["t000000"].state is bm.BatchTaskState.COMPLETED
    assert outcomes["t000000"].result is bm.BatchTaskExecutionResult.SUCCESS
    assert outcomes["t000001"].result is bm.BatchTaskExecutionResult.FAILURE
    assert not outcomes["t000001"].succeeded
    assert outcomes["t000001"].exit_code == 1
    assert outcomes["t000001"].failure_code == "FailureExitCode"
