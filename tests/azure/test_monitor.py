"""The job monitor with the real BatchClient against a scripted Batch endpoint."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest

from batch_transcode import AzureConfig, ProvisioningError, RetryPolicy, RunTimeoutError
from batch_transcode._azure._clients import make_batch_client
from batch_transcode._azure.monitor import Counts, final_states, wait_for_job

Route = Callable[[str], tuple[int, Any]]


class Scripted:
    def __init__(self, route: Route) -> None:
        self.route = route
        self.requests: list[str] = []


def _handler(s: Scripted) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            path = unquote(urlsplit(self.path).path)
            s.requests.append(path)
            status, body = s.route(path)
            data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("content-type", "text/plain" if isinstance(body, str) else "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Handler


@pytest.fixture
def serve() -> Iterator[Callable[[Route], tuple[Scripted, AzureConfig]]]:
    servers: list[ThreadingHTTPServer] = []

    def start(route: Route) -> tuple[Scripted, AzureConfig]:
        scripted = Scripted(route)
        server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(scripted))
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        config = AzureConfig(
            batch_endpoint=f"http://127.0.0.1:{server.server_address[1]}",
            batch_account="acct",
            batch_key="a2V5",
            storage_connection_string="UseDevelopmentStorage=true",
            poll_interval=0.01,
            poll_interval_max=0.05,
            retry=RetryPolicy(attempts=2),
        )
        return scripted, config

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


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
    serve: Callable[[Route], tuple[Scripted, AzureConfig]],
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
    done = wait_for_job(
        make_batch_client(config, retry_total=0),
        job_id="j",
        pool_id="p",
        total=10,
        config=config,
        deadline=float("inf"),
        cancel=threading.Event(),
        on_progress=seen.append,
    )
    assert done
    assert [c.completed for c in seen] == [0, 3, 7, 10]
    assert scripted.requests.count("/jobs/j/taskcounts") == 6
    assert not any(p.endswith("/tasks") for p in scripted.requests)  # never a task listing
    assert scripted.requests.count("/pools/p") == 3  # first poll + the two stalled ones


def test_failed_start_task_raises_at_once_with_its_stderr(
    serve: Callable[[Route], tuple[Scripted, AzureConfig]],
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
        wait_for_job(
            make_batch_client(config, retry_total=0),
            job_id="j",
            pool_id="p",
            total=4,
            config=config,
            deadline=float("inf"),
            cancel=threading.Event(),
        )
    err = info.value
    assert err.pool_id == "p"
    assert err.stderr_tail is not None and "Unable to locate package ffmpeg" in err.stderr_tail
    assert "exit code 100" in str(err)


def test_allocation_error_raises(serve: Callable[[Route], tuple[Scripted, AzureConfig]]) -> None:
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
        wait_for_job(
            make_batch_client(config, retry_total=0),
            job_id="j",
            pool_id="p",
            total=4,
            config=config,
            deadline=float("inf"),
            cancel=threading.Event(),
        )
    assert info.value.code == "AccountCoreQuotaReached"


def test_timeout_and_cancel(serve: Callable[[Route], tuple[Scripted, AzureConfig]]) -> None:
    def route(path: str) -> tuple[int, Any]:
        if path.endswith("/taskcounts"):
            return 200, counts(1, 4)
        if path == "/pools/p":
            return 200, HEALTHY_POOL
        return 200, IDLE_NODES

    _, config = serve(route)
    client = make_batch_client(config, retry_total=0)
    import time

    with pytest.raises(RunTimeoutError, match="1/4 done"):
        wait_for_job(
            client, job_id="j", pool_id="p", total=4, config=config,
            deadline=time.monotonic() + 0.2, cancel=threading.Event(),
        )  # fmt: skip
    cancel = threading.Event()
    cancel.set()
    assert not wait_for_job(
        client, job_id="j", pool_id="p", total=4, config=config, deadline=float("inf"), cancel=cancel
    )


def test_final_listing_is_one_request_with_select(
    serve: Callable[[Route], tuple[Scripted, AzureConfig]],
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
    assert scripted.requests == ["/jobs/j/tasks"]
    assert outcomes["t000000"].succeeded
    assert not outcomes["t000001"].succeeded
    assert outcomes["t000001"].exit_code == 1
    assert outcomes["t000001"].failure_code == "FailureExitCode"
