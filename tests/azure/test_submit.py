"""Task submission with the real BatchClient against a scripted HTTP endpoint.

The endpoint answers ``addtaskcollection`` as the service would (per-task
results, 5xx, 413); the client, its Shared Key signing and its deserialisation
are the real ones.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from batch_transcode import AzureConfig, AzureError, RetryPolicy, ServiceUnavailableError
from batch_transcode._azure import builders, submit
from batch_transcode._azure._clients import make_batch_client
from batch_transcode._azure.submit import TaskFeed
from batch_transcode._config import AptFFmpeg
from batch_transcode._presets import PRESETS
from helpers import ScriptedEndpoint, wait_until

Answer = Callable[[list[dict[str, Any]]], tuple[int, dict[str, Any]]]
Serve = Callable[[Answer], tuple[ScriptedEndpoint, AzureConfig]]


@pytest.fixture
def serve(scripted_batch: Callable[..., tuple[ScriptedEndpoint, AzureConfig]]) -> Serve:
    """``serve(answer)``: a scripted Batch endpoint answering each task collection with
    ``answer(tasks)``, and a config for it."""

    def start(answer: Answer) -> tuple[ScriptedEndpoint, AzureConfig]:
        return scripted_batch(lambda request: answer(request.body["value"]), retry=RetryPolicy(attempts=4))

    return start


def _collections(endpoint: ScriptedEndpoint) -> list[list[dict[str, Any]]]:
    """The tasks of each collection the endpoint received, in order."""
    return [body["value"] for body in endpoint.bodies]


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
            output_blob_names=[f"f{i}.mp3"],
            presets=[PRESETS["mp3"]],
        )
        for i in range(n)
    ]


def _result(task: dict[str, Any], status: str = "success", code: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"status": status, "taskId": task["id"]}
    if code:
        out["error"] = {"code": code, "message": {"lang": "en-US", "value": code}}
    return out


def _submit(client: Any, tasks: list[Any], config: AzureConfig) -> int:
    """Add ``tasks`` through a feed that sends only full collections (and the rest at
    close); the number of collections."""
    feed = TaskFeed(client, "job", config.retry, linger=None)
    for task in tasks:
        feed.add(task)
    return feed.close()


def ok(tasks: list[dict[str, Any]]) -> tuple[int, dict[str, Any]]:
    return 200, {"value": [_result(t) for t in tasks]}


def test_250_tasks_in_three_collections(serve: Serve) -> None:
    endpoint, config = serve(ok)
    client = make_batch_client(config, retry_total=0)
    assert _submit(client, _tasks(250, config), config) == 3
    assert sorted(len(b) for b in _collections(endpoint)) == [50, 100, 100]
    ids = [t["id"] for body in _collections(endpoint) for t in body]
    assert len(set(ids)) == 250


def test_task_exists_is_success(serve: Serve) -> None:
    endpoint, config = serve(
        lambda tasks: (200, {"value": [_result(t, "clienterror", "TaskExists") for t in tasks]})
    )
    client = make_batch_client(config, retry_total=0)
    _submit(client, _tasks(5, config), config)
    assert len(_collections(endpoint)) == 1


def test_server_errors_resubmit_only_those_tasks(
    serve: Serve,
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
    _submit(client, _tasks(10, config), config)
    assert [len(b) for b in _collections(endpoint)] == [10, 5]
    assert [t["id"] for t in _collections(endpoint)[1]] == [f"t{i:06d}" for i in (1, 3, 5, 7, 9)]


def test_persistent_5xx_is_bounded(serve: Serve) -> None:
    endpoint, config = serve(
        lambda tasks: (503, {"code": "ServerBusy", "message": {"lang": "en-US", "value": "busy"}})
    )
    client = make_batch_client(config, retry_total=0)
    with pytest.raises(ServiceUnavailableError, match="503"):
        _submit(client, _tasks(150, config), config)
    # two collections, each tried exactly `attempts` times: no hot re-queue loop
    assert len(_collections(endpoint)) == 2 * config.retry.attempts


def test_client_error_names_the_task(serve: Serve) -> None:
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
        _submit(client, _tasks(3, config), config)
    assert len(_collections(endpoint)) == 1


def test_request_body_too_large_splits(serve: Serve) -> None:
    def answer(tasks: list[dict[str, Any]]) -> tuple[int, dict[str, Any]]:
        if len(tasks) > 30:
            return 413, {"code": "RequestBodyTooLarge", "message": {"lang": "en-US", "value": "too large"}}
        return ok(tasks)

    endpoint, config = serve(answer)
    client = make_batch_client(config, retry_total=0)
    _submit(client, _tasks(100, config), config)
    accepted = [len(b) for b in _collections(endpoint) if len(b) <= 30]
    assert sum(accepted) == 100


def test_a_hurried_feed_sends_what_it_gathered(serve: Serve, monkeypatch: pytest.MonkeyPatch) -> None:
    """With a linger far longer than the test, only hurry() (nodes waiting for tasks)
    sends a partial collection before close(); hurries closer than HURRY_GAP send once."""
    monkeypatch.setattr(submit, "HURRY_GAP", 3600.0)
    endpoint, config = serve(ok)
    client = make_batch_client(config, retry_total=0)
    tasks = _tasks(7, config)
    feed = TaskFeed(client, "job", config.retry, linger=3600.0, linger_max=3600.0)
    for task in tasks[:3]:
        feed.add(task)
    feed.hurry()
    feed.hurry()  # within HURRY_GAP of the first: nothing gathered anyway
    wait_until(lambda: len(endpoint.bodies) == 1, what="the hurried collection")
    for task in tasks[3:5]:
        feed.add(task)
    feed.hurry()  # gathered, but within HURRY_GAP of the last hurried send: kept
    for task in tasks[5:]:
        feed.add(task)
    assert feed.close() == 2
    assert [[t["id"] for t in body] for body in _collections(endpoint)] == [
        [t.id for t in tasks[:3]],
        [t.id for t in tasks[3:]],
    ]
