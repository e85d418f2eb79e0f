"""Task submission with the real BatchClient against a scripted HTTP endpoint.

The endpoint answers ``addtaskcollection`` as the service would (per-task
results, 5xx, 413); the client, its Shared Key signing and its deserialisation
are the real ones.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from batch_transcode import AzureConfig, AzureError, RetryPolicy, ServiceUnavailableError
from batch_transcode._azure import builders
from batch_transcode._azure._clients import make_batch_client
from batch_transcode._azure.submit import submit_tasks
from batch_transcode._config import AptFFmpeg
from batch_transcode._presets import PRESETS

Answer = Callable[[list[dict[str, Any]]], tuple[int, dict[str, Any]]]


class Endpoint:
    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.bodies: list[list[dict[str, Any]]] = []
        self.lock = threading.Lock()


def _handler(endpoint: Endpoint) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            tasks = json.loads(self.rfile.read(length))["value"]
            with endpoint.lock:
                endpoint.bodies.append(tasks)
                status, body = endpoint.answer(tasks)
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Handler


@pytest.fixture
def serve() -> Iterator[Callable[[Answer], tuple[Endpoint, AzureConfig]]]:
    servers: list[ThreadingHTTPServer] = []

    def start(answer: Answer) -> tuple[Endpoint, AzureConfig]:
        endpoint = Endpoint(answer)
        server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(endpoint))
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        config = AzureConfig(
            batch_endpoint=f"http://127.0.0.1:{server.server_address[1]}",
            batch_account="acct",
            batch_key="a2V5",
            storage_connection_string="UseDevelopmentStorage=true",
            retry=RetryPolicy(attempts=4),
        )
        return endpoint, config

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def _tasks(n: int, config: AzureConfig) -> list[Any]:
    setup = builders.ffmpeg_setup(AptFFmpeg(), None)
    return [
        builders.task_create_options(
            config=config,
            setup=setup,
            job_id="job",
            index=i,
            source_name=f"f{i}.mp4",
            input_url="https://x/in?sig=1",
            output_container_url="https://x/out?sig=2",
            output_blob_name=f"f{i}.mp3",
            preset=PRESETS["mp3"],
        )
        for i in range(n)
    ]


def _result(task: dict[str, Any], status: str = "success", code: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"status": status, "taskId": task["id"]}
    if code:
        out["error"] = {"code": code, "message": {"lang": "en-US", "value": code}}
    return out


def ok(tasks: list[dict[str, Any]]) -> tuple[int, dict[str, Any]]:
    return 200, {"value": [_result(t) for t in tasks]}


def test_250_tasks_in_three_collections(serve: Callable[[Answer], tuple[Endpoint, AzureConfig]]) -> None:
    endpoint, config = serve(ok)
    client = make_batch_client(config, retry_total=0)
    assert submit_tasks(client, "job", _tasks(250, config), config.retry) == 3
    assert sorted(len(b) for b in endpoint.bodies) == [50, 100, 100]
    ids = [t["id"] for body in endpoint.bodies for t in body]
    assert len(set(ids)) == 250


def test_task_exists_is_success(serve: Callable[[Answer], tuple[Endpoint, AzureConfig]]) -> None:
    endpoint, config = serve(
        lambda tasks: (200, {"value": [_result(t, "clienterror", "TaskExists") for t in tasks]})
    )
    client = make_batch_client(config, retry_total=0)
    submit_tasks(client, "job", _tasks(5, config), config.retry)
    assert len(endpoint.bodies) == 1


def test_server_errors_resubmit_only_those_tasks(
    serve: Callable[[Answer], tuple[Endpoint, AzureConfig]],
) -> None:
    calls = {"n": 0}

    def answer(tasks: list[dict[str, Any]]) -> tuple[int, dict[str, Any]]:
        calls["n"] += 1
        if calls["n"] == 1:
            return 200, {
                "value": [
                    _result(t, "servererror", "ServerBusy") if i % 2 else _result(t)
                    for i, t in enumerate(tasks)
                ]
            }
        return ok(tasks)

    endpoint, config = serve(answer)
    client = make_batch_client(config, retry_total=0)
    submit_tasks(client, "job", _tasks(10, config), config.retry)
    assert [len(b) for b in endpoint.bodies] == [10, 5]
    assert [t["id"] for t in endpoint.bodies[1]] == [f"t{i:06d}" for i in (1, 3, 5, 7, 9)]


def test_persistent_5xx_is_bounded(serve: Callable[[Answer], tuple[Endpoint, AzureConfig]]) -> None:
    endpoint, config = serve(
        lambda tasks: (503, {"code": "ServerBusy", "message": {"lang": "en-US", "value": "busy"}})
    )
    client = make_batch_client(config, retry_total=0)
    with pytest.raises(ServiceUnavailableError, match="503"):
        submit_tasks(client, "job", _tasks(150, config), config.retry)
    # two collections, each tried exactly `attempts` times: no hot re-queue loop
    assert len(endpoint.bodies) == 2 * config.retry.attempts


def test_client_error_names_the_task(serve: Callable[[Answer], tuple[Endpoint, AzureConfig]]) -> None:
    endpoint, config = serve(
        lambda tasks: (
            200,
            {
                "value": [_result(tasks[0], "clienterror", "InvalidPropertyValue")]
                + [_result(t) for t in tasks[1:]]
            },
        )
    )
    client = make_batch_client(config, retry_total=0)
    with pytest.raises(AzureError, match="t000000: InvalidPropertyValue"):
        submit_tasks(client, "job", _tasks(3, config), config.retry)
    assert len(endpoint.bodies) == 1


def test_request_body_too_large_splits(serve: Callable[[Answer], tuple[Endpoint, AzureConfig]]) -> None:
    def answer(tasks: list[dict[str, Any]]) -> tuple[int, dict[str, Any]]:
        if len(tasks) > 30:
            return 413, {"code": "RequestBodyTooLarge", "message": {"lang": "en-US", "value": "too large"}}
        return ok(tasks)

    endpoint, config = serve(answer)
    client = make_batch_client(config, retry_total=0)
    submit_tasks(client, "job", _tasks(100, config), config.retry)
    accepted = [len(b) for b in endpoint.bodies if len(b) <= 30]
    assert sum(accepted) == 100
