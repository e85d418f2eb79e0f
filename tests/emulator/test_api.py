"""REST contract of the emulator, driven by the unmodified azure-batch client."""

from __future__ import annotations

import json
from typing import Any

import pytest
from azure.batch import BatchClient
from azure.batch import models as bm
from azure.batch.models._models import BatchJobTerminateOptions  # not exported, but the only way to terminate
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
)
from azure.core.rest import HttpRequest

from batch_transcode.testing._batch_emulator import BatchEmulator

API = {"api-version": "2025-06-01"}


def _raw(client: BatchClient, method: str, url: str, body: Any = None, **kw: Any) -> HttpResponseError:
    """Send a correctly signed raw request that must fail; return the error."""
    request = HttpRequest(method, url, params=dict(API), json=body, **kw)
    with pytest.raises(HttpResponseError) as info:
        client.send_request(request)
    return info.value


def test_pool_job_task_round_trip(client: BatchClient, emulator: BatchEmulator, h: Any) -> None:
    client.create_pool(
        h.pool_options(
            "pool-a", metadata=[bm.BatchMetadataItem(name="owner", value="tests")], target_dedicated_nodes=0
        )
    )
    pool = client.get_pool("pool-a")
    assert pool.id == "pool-a"
    assert pool.state == bm.BatchPoolState.ACTIVE
    assert pool.metadata and pool.metadata[0].value == "tests"
    assert pool.etag and pool.creation_time is not None
    assert client.pool_exists("pool-a") is True
    with pytest.raises(ResourceNotFoundError):  # HEAD answers 404; the client's error policy raises on it
        client.pool_exists("nope")
    with pytest.raises(ResourceExistsError) as exists:
        client.create_pool(h.pool_options("pool-a"))
    assert exists.value.error is not None and exists.value.error.code == "PoolExists"

    client.create_job(bm.BatchJobCreateOptions(id="job-a", pool_info=bm.BatchPoolInfo(pool_id="pool-a")))
    job = client.get_job("job-a")
    assert job.state == bm.BatchJobState.ACTIVE and job.pool_info.pool_id == "pool-a"
    with pytest.raises(ResourceExistsError):
        client.create_job(bm.BatchJobCreateOptions(id="JOB-A", pool_info=bm.BatchPoolInfo(pool_id="pool-a")))

    client.create_task("job-a", bm.BatchTaskCreateOptions(id="t1", command_line="/bin/true"))
    task = client.get_task("job-a", "t1")
    assert task.state == bm.BatchTaskState.ACTIVE  # no nodes
    assert task.execution_info is not None and task.execution_info.retry_count == 0
    counts = client.get_job_task_counts("job-a")
    assert counts.task_counts.active == 1 and counts.task_slot_counts.active == 1

    with pytest.raises(ResourceNotFoundError) as missing:
        client.get_task("job-a", "t2")
    assert missing.value.error is not None and missing.value.error.code == "TaskNotFound"
    with pytest.raises(ResourceNotFoundError) as missing_job:
        client.get_job("nope")
    assert missing_job.value.error is not None and missing_job.value.error.code == "JobNotFound"

    client.delete_task("job-a", "t1")
    assert [t.id for t in client.list_tasks("job-a")] == []

    client.begin_delete_job("job-a", polling_interval=0.05).result()
    with pytest.raises(ResourceNotFoundError):
        client.get_job("job-a")

    poller = client.begin_delete_pool("pool-a", polling_interval=0.05)
    assert client.get_pool("pool-a").state == bm.BatchPoolState.DELETING
    with pytest.raises(ResourceExistsError) as deleting:
        client.begin_resize_pool("pool-a", bm.BatchPoolResizeOptions(target_dedicated_nodes=2))
    assert deleting.value.error is not None and deleting.value.error.code == "PoolBeingDeleted"
    poller.result()
    assert not emulator.pools()
    with pytest.raises(ResourceNotFoundError):
        client.get_pool("pool-a")
    assert emulator.pools() == []


def test_response_headers_and_error_body(client: BatchClient, emulator: BatchEmulator, h: Any) -> None:
    captured: dict[str, Any] = {}

    def hook(response: Any) -> None:
        captured["headers"] = dict(response.http_response.headers)

    client.create_pool(h.pool_options("hdr", target_dedicated_nodes=0), raw_response_hook=hook)
    headers = captured["headers"]
    assert headers["DataServiceId"] == f"{emulator.endpoint}/pools/hdr"
    assert headers["ETag"] and headers["Last-Modified"] and headers["request-id"]

    with pytest.raises(ResourceNotFoundError):
        client.get_pool("missing")
    record = emulator.request_log[-1]
    body = json.loads(record.response_body)
    assert set(body) == {"odata.metadata", "code", "message"}
    assert body["code"] == "PoolNotFound" and body["message"]["lang"] == "en-US"
    assert record.operation == "Pools_GetPool" and record.classic_operation == "Pool_Get"
    assert record.status == 404 and record.error_code == "PoolNotFound"


def test_wrong_key_is_rejected(emulator: BatchEmulator, h: Any) -> None:
    bad = h.make_client(emulator, key="d3Jvbmcta2V5LXdyb25nLWtleS13cm9uZy1rZXk=")
    with pytest.raises(HttpResponseError) as info:
        bad.get_pool("any")
    # The service documents AuthenticationFailed as 403 Forbidden.
    assert info.value.status_code == 403
    assert info.value.error is not None and info.value.error.code == "AuthenticationFailed"
    assert emulator.request_log[-1].error_code == "AuthenticationFailed"


def test_missing_credentials_is_401(emulator: BatchEmulator) -> None:
    import requests

    r = requests.get(f"{emulator.endpoint}/pools", params=API, timeout=10)
    assert r.status_code == 401
    assert r.json()["code"] == "AuthenticationFailed"


def test_client_authentication_error_type_on_401(emulator: BatchEmulator, h: Any) -> None:
    from azure.core.pipeline.policies import SansIOHTTPPolicy

    c = h.make_client(emulator, authentication_policy=SansIOHTTPPolicy())  # sends no credentials
    with pytest.raises(ClientAuthenticationError):
        c.get_pool("any")


def test_misspelled_property_is_rejected(client: BatchClient, emulator: BatchEmulator) -> None:
    body = {
        "id": "p",
        "vmSize": "standard_d2s_v3",
        "targetDedicatedNode": 1,  # misspelled
    }
    err = _raw(client, "POST", "/pools", body)
    assert err.status_code == 400
    assert err.error is not None and err.error.code == "InvalidRequestBody"
    values = {d.code: d.message for d in err.error.details}
    assert values["PropertyName"] == "targetDedicatedNode"
    assert emulator.pools() == []


def test_nested_unknown_property_and_missing_required(client: BatchClient) -> None:
    client.create_pool(bm.BatchPoolCreateOptions(id="p", vm_size="standard_d2s_v3", target_dedicated_nodes=0))
    client.create_job(bm.BatchJobCreateOptions(id="j", pool_info=bm.BatchPoolInfo(pool_id="p")))
    err = _raw(
        client,
        "POST",
        "/jobs/j/tasks",
        {"id": "t", "commandLine": "x", "constraints": {"maxTaskRetries": 3}},
    )
    assert err.error is not None and err.error.code == "InvalidRequestBody"
    assert {d.code: d.message for d in err.error.details}["PropertyName"] == "constraints.maxTaskRetries"
    err = _raw(client, "POST", "/jobs/j/tasks", {"id": "t"})
    assert err.error is not None and err.error.code == "MissingRequiredProperty"
    err = _raw(client, "POST", "/jobs/j/tasks", {"id": "t", "commandLine": "x", "requiredSlots": "two"})
    assert err.status_code == 400
    err = _raw(
        client, "POST", "/pools/p/resize", {"targetDedicatedNodes": 1, "nodeDeallocationOption": "never"}
    )
    assert err.error is not None and err.error.code == "InvalidPropertyValue"


def test_api_version_is_required(client: BatchClient) -> None:
    with pytest.raises(HttpResponseError) as info:
        client.send_request(HttpRequest("GET", "/pools"))
    assert info.value.error is not None and info.value.error.code == "MissingRequiredQueryParameter"


def _task_json(i: int, extra: int = 0) -> dict[str, Any]:
    doc: dict[str, Any] = {"id": f"t{i:04d}", "commandLine": "/bin/true"}
    if extra:
        doc["environmentSettings"] = [{"name": "PAD", "value": "x" * extra}]
    return doc


def test_task_collection_limits(client: BatchClient, emulator: BatchEmulator) -> None:
    client.create_pool(bm.BatchPoolCreateOptions(id="p", vm_size="standard_d2s_v3", target_dedicated_nodes=0))
    client.create_job(bm.BatchJobCreateOptions(id="j", pool_info=bm.BatchPoolInfo(pool_id="p")))

    err = _raw(client, "POST", "/jobs/j/addtaskcollection", {"value": [_task_json(i) for i in range(101)]})
    assert err.status_code == 413
    assert err.error is not None and err.error.code == "RequestBodyTooLarge"

    err = _raw(
        client, "POST", "/jobs/j/addtaskcollection", {"value": [_task_json(i, 12_000) for i in range(100)]}
    )
    assert err.status_code == 413
    assert err.error is not None and err.error.code == "RequestBodyTooLarge"
    assert emulator.tasks("j") == []

    result = client.create_task_collection(
        "j",
        bm.BatchTaskGroup(
            task_values=[bm.BatchTaskCreateOptions(id=i, command_line="/bin/true") for i in ("a", "b", "a")]
        ),
    )
    statuses = sorted(
        (r.task_id, r.status, r.error.code if r.error else None) for r in (result.result_values or [])
    )
    assert statuses == [
        ("a", bm.BatchTaskAddStatus.CLIENT_ERROR, "TaskExists"),
        ("a", bm.BatchTaskAddStatus.SUCCESS, None),
        ("b", bm.BatchTaskAddStatus.SUCCESS, None),
    ]


def test_create_tasks_chunks_and_halves(client: BatchClient, emulator: BatchEmulator) -> None:
    client.create_pool(bm.BatchPoolCreateOptions(id="p", vm_size="standard_d2s_v3", target_dedicated_nodes=0))
    client.create_job(bm.BatchJobCreateOptions(id="j", pool_info=bm.BatchPoolInfo(pool_id="p")))
    emulator.clear_request_log()
    client.create_tasks(
        "j", [bm.BatchTaskCreateOptions(id=f"t{i}", command_line="/bin/true") for i in range(250)]
    )
    assert emulator.request_counts()["Task_AddCollection"] == 3
    assert emulator.request_counts()["Tasks_CreateTaskCollection"] == 3
    assert len(emulator.tasks("j")) == 250

    client.create_job(bm.BatchJobCreateOptions(id="big", pool_info=bm.BatchPoolInfo(pool_id="p")))
    emulator.clear_request_log()
    pad = [bm.EnvironmentSetting(name="PAD", value="x" * 15_000)]
    client.create_tasks(
        "big",
        [
            bm.BatchTaskCreateOptions(id=f"t{i}", command_line="/bin/true", environment_settings=pad)
            for i in range(100)
        ],
    )
    codes = [r.error_code for r in emulator.request_log if r.operation == "Tasks_CreateTaskCollection"]
    assert codes == ["RequestBodyTooLarge", None, None]
    assert len(emulator.tasks("big")) == 100


def test_list_paging_filter_select(client: BatchClient, emulator: BatchEmulator) -> None:
    client.create_pool(bm.BatchPoolCreateOptions(id="p", vm_size="standard_d2s_v3", target_dedicated_nodes=0))
    client.create_job(bm.BatchJobCreateOptions(id="j", pool_info=bm.BatchPoolInfo(pool_id="p")))
    client.create_tasks(
        "j", [bm.BatchTaskCreateOptions(id=f"t{i:03d}", command_line="/bin/true") for i in range(25)]
    )
    emulator.clear_request_log()
    ids = [t.id for t in client.list_tasks("j", max_results=10)]
    assert ids == [f"t{i:03d}" for i in range(25)]
    pages = [r for r in emulator.request_log if r.operation == "Tasks_ListTasks"]
    assert len(pages) == 3 and pages[1].query["$skiptoken"] == "t009"

    selected = list(client.list_tasks("j", filter="startswith(id,'t00')", select=["id", "state"]))
    assert [t.id for t in selected] == [f"t{i:03d}" for i in range(10)]
    assert selected[0].command_line is None and selected[0].state == bm.BatchTaskState.ACTIVE
    assert list(client.list_tasks("j", filter="state eq 'completed'")) == []
    assert (
        len(list(client.list_tasks("j", filter="state eq 'active' and (id eq 't001' or id eq 'T002')"))) == 2
    )

    for i in range(3):
        client.create_pool(
            bm.BatchPoolCreateOptions(id=f"other-{i}", vm_size="standard_d2s_v3", target_dedicated_nodes=0)
        )
    assert sorted(p.id for p in client.list_pools(filter="startswith(id,'other-')")) == [
        "other-0",
        "other-1",
        "other-2",
    ]
    assert [j.id for j in client.list_jobs(filter="state eq 'active'", select=["id"])] == ["j"]

    with pytest.raises(HttpResponseError) as bad:
        list(client.list_tasks("j", filter="state eq"))
    assert bad.value.error is not None and bad.value.error.code == "InvalidQueryParameterValue"


def test_terminate_and_job_states(client: BatchClient, emulator: BatchEmulator, h: Any) -> None:
    client.create_pool(h.pool_options("p", target_dedicated_nodes=1))
    client.create_job(
        bm.BatchJobCreateOptions(
            id="j",
            pool_info=bm.BatchPoolInfo(pool_id="p"),
            metadata=[bm.BatchMetadataItem(name="k", value="v")],
        )
    )
    client.create_task("j", bm.BatchTaskCreateOptions(id="sleep", command_line="sleep 30"))
    h.wait_until(lambda: client.get_task("j", "sleep").state == bm.BatchTaskState.RUNNING)
    # (the client fails before sending unless the options carry a reason)
    client.begin_terminate_job(
        "j", BatchJobTerminateOptions(termination_reason="UserTerminate"), polling_interval=0.05
    ).result()
    job = client.get_job("j")
    assert job.state == bm.BatchJobState.COMPLETED
    assert job.execution_info.termination_reason == "UserTerminate"
    task = client.get_task("j", "sleep")
    assert task.state == bm.BatchTaskState.COMPLETED
    assert task.execution_info.failure_info.code == "TaskEnded"
    assert emulator.jobs()[0].metadata == {"k": "v"}
    with pytest.raises(ResourceExistsError) as done:
        client.create_task("j", bm.BatchTaskCreateOptions(id="late", command_line="/bin/true"))
    assert done.value.error is not None and done.value.error.code == "JobCompleted"


def test_paging_continues_after_the_last_item_whatever_changed_between_pages(
    client: BatchClient, emulator: BatchEmulator
) -> None:
    """A continuation resumes after the last task listed: a task deleted from the first
    page or one that begins to match ahead of the cursor shifts nothing after it."""
    client.create_pool(bm.BatchPoolCreateOptions(id="p", vm_size="standard_d2s_v3", target_dedicated_nodes=0))
    client.create_job(bm.BatchJobCreateOptions(id="jc", pool_info=bm.BatchPoolInfo(pool_id="p")))
    ids = [f"t{i:03d}" for i in range(25)]
    client.create_tasks("jc", [bm.BatchTaskCreateOptions(id=i, command_line="/bin/true") for i in ids])
    pages = client.list_tasks("jc", max_results=10).by_page()
    first = [t.id for t in next(pages)]
    client.delete_task("jc", "t003")  # gone from the first page
    assert first == ids[:10] and [t.id for page in pages for t in page] == ids[10:]
    pages = client.list_tasks("jc", max_results=10, filter="state eq 'active'").by_page()
    first = [t.id for t in next(pages)]
    client.create_task("jc", bm.BatchTaskCreateOptions(id="a000", command_line="/bin/true"))  # ahead
    assert first == ids[:3] + ids[4:11]
    assert [t.id for page in pages for t in page] == ids[11:]


def test_paged_listing_without_filter_and_drained_log(client: BatchClient, emulator: BatchEmulator) -> None:
    """Task listings without $filter render only the page asked for: same order (ids
    case-insensitively), same pages, $select kept across pages."""
    client.create_pool(bm.BatchPoolCreateOptions(id="p", vm_size="standard_d2s_v3", target_dedicated_nodes=0))
    client.create_job(bm.BatchJobCreateOptions(id="jp", pool_info=bm.BatchPoolInfo(pool_id="p")))
    ids = [f"T{i:02d}" if i % 2 else f"t{i:02d}" for i in range(23)]
    client.create_tasks("jp", [bm.BatchTaskCreateOptions(id=i, command_line="/bin/true") for i in ids[::-1]])
    emulator.drain_request_log()
    listed = list(client.list_tasks("jp", max_results=10, select=["id", "state"]))
    assert [t.id for t in listed] == ids
    assert all(t.command_line is None for t in listed)
    drained = emulator.drain_request_log()
    assert [r.operation for r in drained] == ["Tasks_ListTasks"] * 3
    assert [r.query.get("$skiptoken") for r in drained] == [None, "t09", "t19"]
    assert all(r.query["$select"] == "id,state" and r.seconds > 0 and r.cpu_seconds > 0 for r in drained)
    assert emulator.request_log == [] and emulator.drain_request_log() == []
