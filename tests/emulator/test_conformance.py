"""The emulator answers as the Batch service answers.

Each expectation here is what the live service answered to the official azure-batch SDK
tests (their recordings are public: Azure/azure-sdk-assets,
python/sdk/batch/azure-batch/tests/recordings/, the ``[sync]`` files named in each test),
written as our own test: status codes, error codes, default values, key sets, headers
and enum casing. ``benchmarks/conformance.py`` replays the recordings themselves.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.batch import BatchClient
from azure.core.exceptions import HttpResponseError
from azure.core.rest import HttpRequest

from batch_transcode.testing._batch_emulator import BatchEmulator
from helpers import batch_client, wait_until

API = "api-version=2025-06-01"
INFINITE = "P10675199DT2H48M5.4775807S"
UBUNTU = {
    "imageReference": {"publisher": "canonical", "offer": "ubuntu-24_04-lts", "sku": "server"},
    "nodeAgentSKUId": "batch.node.ubuntu 24.04",
}
WINDOWS = {
    "imageReference": {
        "publisher": "MicrosoftWindowsServer",
        "offer": "WindowsServer",
        "sku": "2022-datacenter-smalldisk",
    },
    "nodeAgentSKUId": "batch.node.windows amd64",
    "windowsConfiguration": {"enableAutomaticUpdates": True},
}
AUTO_USER = {"autoUser": {"scope": "pool", "elevationLevel": "nonadmin"}}
NAT_POOL = {
    "name": "TestEndpointConfig",
    "protocol": "udp",
    "backendPort": 64444,
    "frontendPortRangeStart": 60000,
    "frontendPortRangeEnd": 61000,
}


class Answer:
    def __init__(self, status: int, body: Any, headers: dict[str, str]) -> None:
        self.status = status
        self.body = body
        self.headers = headers

    def error(self) -> tuple[str, dict[str, str]]:
        """The error code and its ``values`` as a dict."""
        return self.body["code"], {v["key"]: v["value"] for v in self.body.get("values", [])}


def send(client: BatchClient, method: str, path: str, body: Any = None) -> Answer:
    """A signed raw request and the emulator's answer, error or not."""
    sep = "&" if "?" in path else "?"
    request = HttpRequest(method, f"{path}{sep}{API}", json=body)
    try:
        response = client.send_request(request)
    except HttpResponseError as exc:
        if exc.response is None:
            raise
        response = exc.response  # type: ignore[assignment]
    text = response.text() if method != "HEAD" else ""
    return Answer(response.status_code, json.loads(text) if text else None, dict(response.headers))


def create_pool(client: BatchClient, pool_id: str, **spec: Any) -> Answer:
    body = {"id": pool_id, "vmSize": "standard_d2_v2", "virtualMachineConfiguration": UBUNTU, **spec}
    return send(client, "POST", "/pools", body)


@pytest.fixture
def slow_emulator(tmp_path: Path) -> Iterator[BatchEmulator]:
    """An emulator whose nodes take a while to allocate, as the service's do."""
    with BatchEmulator(workdir=tmp_path / "slow", allocation_delay=30.0) as emu:
        yield emu


@pytest.fixture
def slow_client(slow_emulator: BatchEmulator) -> Iterator[BatchClient]:
    c = batch_client(slow_emulator, retry_backoff_factor=0.01)
    yield c
    c.close()


# ---------------------------------------------------------------- headers and errors


def test_every_answer_carries_data_service_version(client: BatchClient) -> None:
    # every entry of every recording has DataServiceVersion: 3.0, errors included
    created = create_pool(client, "dsv")
    listed = send(client, "GET", "/pools")
    missing = send(client, "GET", "/pools/non-existent-pool-id")
    head = send(client, "HEAD", "/pools/dsv")
    assert [a.status for a in (created, listed, missing, head)] == [201, 200, 404, 200]
    assert all(a.headers.get("DataServiceVersion") == "3.0" for a in (created, listed, missing, head))


def test_missing_pool_and_existing_job_errors(client: BatchClient) -> None:
    # test_batch_exception_policy
    missing = send(client, "GET", "/pools/non-existent-pool-id")
    assert missing.status == 404
    assert missing.body["code"] == "PoolNotFound"
    assert missing.body["message"]["lang"] == "en-US"
    assert missing.body["message"]["value"].startswith("The specified pool does not exist.\nRequestId:")
    assert missing.body["odata.metadata"].endswith(
        "/$metadata#Microsoft.Azure.Batch.Protocol.Entities.Container.errors/@Element"
    )
    job = {
        "id": "batch_test_job_",
        "poolInfo": {
            "autoPoolSpecification": {
                "poolLifetimeOption": "job",
                "pool": {"vmSize": "standard_d2_v2", "virtualMachineConfiguration": UBUNTU},
            }
        },
    }
    assert send(client, "POST", "/jobs", job).status == 201
    again = send(client, "POST", "/jobs", job)
    assert (again.status, again.body["code"]) == (409, "JobExists")


# ---------------------------------------------------------------- pools


def test_pool_answer_fills_in_the_service_defaults(client: BatchClient) -> None:
    # test_batch_create_pools (batch_disk_), test_batch_network_configuration
    vmc = {**UBUNTU, "dataDisks": [{"lun": 1, "diskSizeGB": 50}]}
    rule = {"priority": 150, "access": "allow", "sourceAddressPrefix": "*"}
    network = {
        "endpointConfiguration": {"inboundNATPools": [{**NAT_POOL, "networkSecurityGroupRules": [rule]}]}
    }
    assert (
        create_pool(
            client, "batch_disk", virtualMachineConfiguration=vmc, networkConfiguration=network
        ).status
        == 201
    )
    pool = send(client, "GET", "/pools/batch_disk").body
    assert pool["odata.metadata"].endswith("/$metadata#pools/@Element")
    assert {
        k: pool[k]
        for k in (
            "resizeTimeout",
            "targetDedicatedNodes",
            "targetLowPriorityNodes",
            "enableAutoScale",
            "enableInterNodeCommunication",
            "taskSlotsPerNode",
            "taskSchedulingPolicy",
        )
    } == {
        "resizeTimeout": "PT15M",
        "targetDedicatedNodes": 0,
        "targetLowPriorityNodes": 0,
        "enableAutoScale": False,
        "enableInterNodeCommunication": False,
        "taskSlotsPerNode": 1,
        "taskSchedulingPolicy": {"nodeFillType": "Spread", "jobDefaultOrder": "none"},
    }
    answered_vmc = pool["virtualMachineConfiguration"]
    assert answered_vmc["imageReference"]["version"] == "latest"
    assert answered_vmc["dataDisks"] == [
        {"lun": 1, "caching": "none", "diskSizeGB": 50, "storageAccountType": "standard_lrs"}
    ]
    answered_network = pool["networkConfiguration"]
    assert answered_network["dynamicVNetAssignmentScope"] == "none"
    assert answered_network["enableAcceleratedNetworking"] is False
    [nat_pool] = answered_network["endpointConfiguration"]["inboundNATPools"]
    assert nat_pool["networkSecurityGroupRules"] == [{**rule, "sourcePortRanges": ["*"]}]
    assert set(pool) >= {
        "id",
        "url",
        "eTag",
        "lastModified",
        "creationTime",
        "state",
        "stateTransitionTime",
        "allocationState",
        "allocationStateTransitionTime",
        "vmSize",
        "currentDedicatedNodes",
        "currentLowPriorityNodes",
    }


def test_enums_accepted_in_any_casing_and_answered_in_the_service_casing(client: BatchClient) -> None:
    # test_batch_create_pools sends "pack" and gets "Pack"; the osdisk tests send
    # "readwrite" and get "ReadWrite"
    osdisk = {**WINDOWS, "osDisk": {"caching": "readwrite"}}
    assert create_pool(client, "lower", taskSchedulingPolicy={"nodeFillType": "pack"}).status == 201
    assert create_pool(client, "upper", taskSchedulingPolicy={"nodeFillType": "Pack"}).status == 201
    assert create_pool(client, "disk", virtualMachineConfiguration=osdisk).status == 201
    for pool_id in ("lower", "upper"):
        assert send(client, "GET", f"/pools/{pool_id}").body["taskSchedulingPolicy"]["nodeFillType"] == "Pack"
    disk = send(client, "GET", "/pools/disk").body["virtualMachineConfiguration"]["osDisk"]
    assert disk == {
        "caching": "ReadWrite",
        "ephemeralOSDiskSettings": {},
        "managedDisk": {"storageAccountType": "standard_lrs"},
    }
    wrong = create_pool(client, "wrong", taskSchedulingPolicy={"nodeFillType": "packed"})
    assert (wrong.status, wrong.body["code"]) == (400, "InvalidPropertyValue")


def test_user_accounts_hide_passwords_and_get_defaults(client: BatchClient) -> None:
    # test_batch_create_pools (batch_iaas_): Windows accounts get loginMode "batch"
    accounts = [
        {"name": "test-user-1", "password": "Pa55-word-1"},
        {"name": "test-user-2", "password": "Pa55-word-2", "elevationLevel": "admin"},
    ]
    assert (
        create_pool(client, "iaas", virtualMachineConfiguration=WINDOWS, userAccounts=accounts).status == 201
    )
    assert create_pool(client, "linux", userAccounts=accounts[1:]).status == 201
    windows = send(client, "GET", "/pools/iaas").body["userAccounts"]
    assert windows == [
        {
            "name": "test-user-1",
            "elevationLevel": "nonadmin",
            "windowsUserConfiguration": {"loginMode": "batch"},
        },
        {
            "name": "test-user-2",
            "elevationLevel": "admin",
            "windowsUserConfiguration": {"loginMode": "batch"},
        },
    ]
    assert send(client, "GET", "/pools/linux").body["userAccounts"] == [
        {"name": "test-user-2", "elevationLevel": "admin"}
    ]
    assert "Pa55" not in json.dumps(send(client, "GET", "/pools").body)


def test_malformed_image_id_is_an_invalid_property_value(client: BatchClient) -> None:
    # test_batch_create_pools (batch_image_): ".../gallery/..." is not a resource id form
    bad = "/subscriptions/0/resourceGroups/test/providers/Microsoft.Compute/gallery/G/images/I/versions/v"
    good = (
        "/subscriptions/0/resourceGroups/test/providers/Microsoft.Compute/galleries/G/images/I/versions/1.0.0"
    )
    vmc = {"imageReference": {"virtualMachineImageId": bad}, "nodeAgentSKUId": "batch.node.ubuntu 24.04"}
    answer = create_pool(client, "batch_image", virtualMachineConfiguration=vmc)
    code, values = answer.error()
    assert (answer.status, code, values["PropertyName"], values["PropertyValue"]) == (
        400,
        "InvalidPropertyValue",
        "virtualMachineImageId",
        bad,
    )
    assert values["Reason"].startswith("The specified resource id must be of the format /subscriptions/")
    vmc["imageReference"] = {"virtualMachineImageId": good}
    assert create_pool(client, "batch_image", virtualMachineConfiguration=vmc).status == 201
    answered = send(client, "GET", "/pools/batch_image").body["virtualMachineConfiguration"]["imageReference"]
    assert answered == {"virtualMachineImageId": good}  # no "version" for an image id


def test_subnet_of_another_subscription_is_refused(client: BatchClient) -> None:
    # test_batch_create_pools (batch_network_)
    subnet = (
        "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/test/providers/"
        "Microsoft.Network/virtualNetworks/vnet1/subnets/subnet1"
    )
    answer = create_pool(client, "batch_network", networkConfiguration={"subnetId": subnet})
    code, values = answer.error()
    assert (answer.status, code, values["PropertyName"]) == (400, "InvalidPropertyValue", "subnetId")
    assert values["Reason"].startswith("The specified subnetId is in a different subscription")
    assert send(client, "GET", "/pools/batch_network").status == 404


def test_pool_listing_pages_and_selects(client: BatchClient) -> None:
    # test_batch_create_pools: maxresults=1 pages with odata.nextLink; $select keeps only id, state
    for pool_id in ("batch_ade", "batch_disk", "batch_iaas"):
        assert create_pool(client, pool_id).status == 201
    page = send(client, "GET", "/pools?maxresults=1")
    assert [p["id"] for p in page.body["value"]] == ["batch_ade"]
    assert "$skiptoken=" in page.body["odata.nextLink"]
    chosen = send(client, "GET", "/pools?$filter=startswith(id,'batch_ade_')&$select=id,state")
    assert chosen.status == 200
    selected = send(client, "GET", "/pools/batch_ade?$select=id,state")
    assert set(selected.body) == {"odata.metadata", "id", "state"}


def test_update_properties_replaces_and_patch_merges(client: BatchClient) -> None:
    # test_batch_update_pools: updateproperties is 204 and drops the start task; PATCH is 200
    start = {"commandLine": "/bin/true", "environmentSettings": [{"name": "ENV_VAR", "value": "env_value"}]}
    assert create_pool(client, "paas", startTask=start).status == 201
    replaced = send(
        client,
        "POST",
        "/pools/paas/updateproperties",
        {"applicationPackageReferences": [], "metadata": [{"name": "foo", "value": "bar"}]},
    )
    assert replaced.status == 204
    patched = send(client, "PATCH", "/pools/paas", {"metadata": [{"name": "foo2", "value": "bar2"}]})
    assert patched.status == 200
    pool = send(client, "GET", "/pools/paas").body
    assert pool["metadata"] == [{"name": "foo2", "value": "bar2"}]
    assert "startTask" not in pool
    assert send(client, "HEAD", "/pools/paas").status == 200
    assert send(client, "DELETE", "/pools/paas").status == 202


def test_autoscale_evaluation_and_canonical_durations(client: BatchClient) -> None:
    # test_batch_scale_pools: "PT06M00S" is answered "PT6M"; a constant formula evaluates exactly
    assert create_pool(client, "scale", displayName="test_pool").status == 201
    enabled = send(
        client,
        "POST",
        "/pools/scale/enableautoscale",
        {"autoScaleFormula": "$TargetDedicatedNodes=2", "autoScaleEvaluationInterval": "PT06M00S"},
    )
    assert enabled.status == 200
    run = send(
        client, "POST", "/pools/scale/evaluateautoscale", {"autoScaleFormula": "$TargetDedicatedNodes=3"}
    )
    assert run.status == 200
    assert (
        run.body["results"]
        == "$TargetDedicatedNodes=3;$TargetLowPriorityNodes=0;$NodeDeallocationOption=requeue"
    )
    assert run.body["odata.metadata"].endswith(
        "/$metadata#Microsoft.Azure.Batch.Protocol.Entities.AutoScaleRun"
    )
    pool = send(client, "GET", "/pools/scale").body
    assert (pool["enableAutoScale"], pool["autoScaleEvaluationInterval"]) == (True, "PT6M")
    assert (pool["resizeTimeout"], pool["targetDedicatedNodes"]) == ("PT15M", 0)
    assert send(client, "POST", "/pools/scale/disableautoscale").status == 200
    assert send(client, "GET", "/pools/scale").body["enableAutoScale"] is False


def test_stop_resize_keeps_the_target_and_reports_resize_stopped(
    slow_client: BatchClient, slow_emulator: BatchEmulator
) -> None:
    # test_batch_scale_pools: "stopping", then "steady" with the target kept and a ResizeStopped error
    client = slow_client
    assert create_pool(client, "stop", targetDedicatedNodes=0).status == 201
    assert (
        send(
            client, "POST", "/pools/stop/resize", {"targetDedicatedNodes": 0, "targetLowPriorityNodes": 2}
        ).status
        == 202
    )
    assert send(client, "POST", "/pools/stop/stopresize").status == 202
    stopping = send(client, "GET", "/pools/stop").body
    assert (stopping["allocationState"], stopping["targetLowPriorityNodes"]) == ("stopping", 2)
    assert wait_until(
        lambda: send(client, "GET", "/pools/stop").body["allocationState"] == "steady", timeout=10
    )
    pool = send(client, "GET", "/pools/stop").body
    assert (pool["targetLowPriorityNodes"], pool["currentLowPriorityNodes"]) == (2, 0)
    assert pool["resizeErrors"] == [
        {
            "code": "ResizeStopped",
            "message": (
                "Desired number of low priority nodes could not be allocated due to a stop resize operation"
            ),
        }
    ]


def test_node_endpoints_follow_the_pool_nat_pools(client: BatchClient, emulator: BatchEmulator) -> None:
    # test_batch_network_configuration: the node lists one inbound endpoint per NAT pool
    network = {"endpointConfiguration": {"inboundNATPools": [NAT_POOL]}}
    assert create_pool(client, "net", targetDedicatedNodes=1, networkConfiguration=network).status == 201
    assert wait_until(lambda: len(send(client, "GET", "/pools/net/nodes").body["value"]) == 1, timeout=20)
    node = send(client, "GET", "/pools/net/nodes").body["value"][0]
    assert node["schedulingState"] == "enabled"
    assert node["isDedicated"] is True
    endpoint = node["endpointConfiguration"]["inboundEndpoints"][0]
    assert {k: endpoint[k] for k in ("name", "protocol", "frontendPort", "backendPort")} == {
        "name": "TestEndpointConfig.0",
        "protocol": "udp",
        "frontendPort": 60000,
        "backendPort": 64444,
    }
    image = node["virtualMachineInfo"]["imageReference"]
    assert (image["version"], image["exactVersion"]) == ("latest", "latest")


# ---------------------------------------------------------------- jobs and tasks


def auto_pool_job(job_id: str, **spec: Any) -> dict[str, Any]:
    pool = {"vmSize": "standard_d2_v2", "virtualMachineConfiguration": UBUNTU}
    return {
        "id": job_id,
        "poolInfo": {"autoPoolSpecification": {"poolLifetimeOption": "job", "pool": pool}},
        **spec,
    }


def test_job_answer_fills_in_task_and_auto_pool_defaults(client: BatchClient) -> None:
    # test_batch_jobs: jobPreparationTask, jobReleaseTask and autoPoolSpecification defaults
    job = auto_pool_job(
        "batch_job1",
        jobPreparationTask={"commandLine": "/bin/echo hello"},
        jobReleaseTask={"commandLine": "/bin/echo goodbye"},
    )
    assert send(client, "POST", "/jobs", job).status == 201
    doc = send(client, "GET", "/jobs/batch_job1").body
    assert doc["odata.metadata"].endswith("/$metadata#jobs/@Element")
    assert {
        k: doc[k]
        for k in (
            "priority",
            "maxParallelTasks",
            "usesTaskDependencies",
            "allowTaskPreemption",
            "onAllTasksComplete",
            "onTaskFailure",
            "constraints",
        )
    } == {
        "priority": 0,
        "maxParallelTasks": -1,
        "usesTaskDependencies": False,
        "allowTaskPreemption": False,
        "onAllTasksComplete": "noaction",
        "onTaskFailure": "noaction",
        "constraints": {"maxWallClockTime": INFINITE, "maxTaskRetryCount": 0},
    }
    assert doc["jobPreparationTask"] == {
        "id": "jobpreparation",
        "commandLine": "/bin/echo hello",
        "constraints": {"maxWallClockTime": INFINITE, "retentionTime": "P7D", "maxTaskRetryCount": 0},
        "userIdentity": AUTO_USER,
        "waitForSuccess": True,
        "rerunOnNodeRebootAfterSuccess": True,
    }
    assert doc["jobReleaseTask"] == {
        "id": "jobrelease",
        "commandLine": "/bin/echo goodbye",
        "maxWallClockTime": "PT15M",
        "retentionTime": "P7D",
        "userIdentity": AUTO_USER,
    }
    auto = doc["poolInfo"]["autoPoolSpecification"]
    assert auto["keepAlive"] is False
    pool = auto["pool"]
    assert {
        k: pool[k]
        for k in (
            "taskSlotsPerNode",
            "resizeTimeout",
            "targetDedicatedNodes",
            "targetLowPriorityNodes",
            "enableAutoScale",
            "enableInterNodeCommunication",
        )
    } == {
        "taskSlotsPerNode": 1,
        "resizeTimeout": "PT15M",
        "targetDedicatedNodes": 0,
        "targetLowPriorityNodes": 0,
        "enableAutoScale": False,
        "enableInterNodeCommunication": False,
    }
    assert pool["taskSchedulingPolicy"]["nodeFillType"] == "Spread"
    assert pool["virtualMachineConfiguration"]["imageReference"]["version"] == "latest"
    assert set(doc["executionInfo"]) == {"startTime", "poolId"}


def test_replace_job_sets_what_it_sends_and_resets_the_rest(client: BatchClient) -> None:
    # test_batch_jobs: PUT with priority, constraints and poolInfo is 200 (read-only
    # "required" properties of BatchJob are not asked of a request)
    job = auto_pool_job("replaced", onAllTasksComplete="noaction", maxParallelTasks=4)
    assert send(client, "POST", "/jobs", job).status == 201
    pool_info = job["poolInfo"]
    put = send(
        client,
        "PUT",
        "/jobs/replaced",
        {"priority": 500, "constraints": {"maxTaskRetryCount": 3}, "poolInfo": pool_info},
    )
    assert put.status == 200
    assert put.headers.get("ETag")
    assert send(client, "PATCH", "/jobs/replaced", {"priority": 900}).status == 200
    doc = send(client, "GET", "/jobs/replaced").body
    assert (doc["priority"], doc["constraints"]["maxTaskRetryCount"], doc["maxParallelTasks"]) == (900, 3, -1)
    no_pool = send(client, "PUT", "/jobs/replaced", {"priority": 1})
    code, values = no_pool.error()
    assert (no_pool.status, code, values["PropertyName"]) == (400, "MissingRequiredProperty", "poolInfo")


def test_job_lifecycle_answers(client: BatchClient) -> None:
    # test_batch_jobs: disable, enable, preparation status, terminate, delete
    assert send(client, "POST", "/jobs", auto_pool_job("cycle")).status == 201
    assert send(client, "POST", "/jobs/cycle/disable", {"disableTasks": "requeue"}).status == 202
    assert send(client, "POST", "/jobs/cycle/enable").status == 202
    status = send(client, "GET", "/jobs/cycle/jobpreparationandreleasetaskstatus")
    assert status.status == 200
    assert status.body["value"] == []
    assert status.body["odata.metadata"].endswith("/$metadata#jobpreparationandreleasetaskstatuslist")
    assert send(client, "POST", "/jobs/cycle/terminate").status == 202
    assert send(client, "DELETE", "/jobs/cycle").status == 202


def test_task_answer_fills_in_user_identity_and_constraints(client: BatchClient) -> None:
    # test_batch_files: a task added with only an id and a command line
    assert create_pool(client, "tasks").status == 201
    assert send(client, "POST", "/jobs", {"id": "batch", "poolInfo": {"poolId": "tasks"}}).status == 201
    assert (
        send(client, "POST", "/jobs/batch/tasks", {"id": "test_task", "commandLine": "/bin/true"}).status
        == 201
    )
    task = send(client, "GET", "/jobs/batch/tasks/test_task").body
    assert task["odata.metadata"].endswith("/$metadata#tasks/@Element")
    assert {
        k: task[k] for k in ("userIdentity", "constraints", "requiredSlots", "executionInfo", "state")
    } == {
        "userIdentity": AUTO_USER,
        "constraints": {"maxWallClockTime": INFINITE, "retentionTime": "P7D", "maxTaskRetryCount": 0},
        "requiredSlots": 1,
        "executionInfo": {"retryCount": 0, "requeueCount": 0},
        "state": "active",
    }


# ---------------------------------------------------------------- account: images and Spot


def test_supported_images_carry_end_of_life_dates(client: BatchClient) -> None:
    images = send(client, "GET", "/supportedimages").body["value"]
    by_agent: dict[str, list[dict[str, Any]]] = {}
    for image in images:
        assert set(image) >= {
            "nodeAgentSKUId",
            "imageReference",
            "osType",
            "verificationType",
            "capabilities",
        }
        by_agent.setdefault(image["nodeAgentSKUId"], []).append(image)
    assert "batch.node.ubuntu 20.04" not in by_agent  # retired 2025-04-23: no longer listed
    assert all("batchSupportEndOfLife" not in i for i in by_agent["batch.node.ubuntu 24.04"])
    assert {i["batchSupportEndOfLife"] for i in by_agent["batch.node.ubuntu 22.04"]} == {
        "2027-06-30T00:00:00Z"
    }


@pytest.mark.parametrize(("mode", "spot_nodes"), [("BatchService", 0), ("UserSubscription", 1)])
def test_spot_nodes_depend_on_the_account_pool_allocation_mode(
    client: BatchClient, emulator: BatchEmulator, mode: str, spot_nodes: int
) -> None:
    emulator.set_pool_allocation_mode(mode)  # type: ignore[arg-type]
    assert emulator.pool_allocation_mode == mode
    assert create_pool(client, "spot", targetDedicatedNodes=0, targetLowPriorityNodes=1).status == 201
    assert wait_until(
        lambda: send(client, "GET", "/pools/spot").body["allocationState"] == "steady", timeout=20
    )
    pool = send(client, "GET", "/pools/spot").body
    assert (pool["targetLowPriorityNodes"], pool["currentLowPriorityNodes"]) == (1, spot_nodes)
    codes = [e["code"] for e in pool.get("resizeErrors", [])]
    assert codes == ([] if spot_nodes else ["AccountLowPriorityCoreQuotaReached"])


def test_unknown_pool_allocation_mode_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="pool_allocation_mode"):
        BatchEmulator(workdir=tmp_path, pool_allocation_mode="Shared")  # type: ignore[arg-type]


def test_a_new_pool_is_resizing_until_its_nodes_are_allocated(slow_client: BatchClient) -> None:
    # test_batch_network_configuration: right after Create Pool the pool is "resizing" with no nodes
    assert create_pool(slow_client, "polled", targetDedicatedNodes=1).status == 201
    first = send(slow_client, "GET", "/pools/polled").body
    assert (first["allocationState"], first["currentDedicatedNodes"], first["targetDedicatedNodes"]) == (
        "resizing",
        0,
        1,
    )


# ---------------------------------------------------------------- task and node files


def test_task_and_node_files_as_the_service_serves_them(client: BatchClient, emulator: BatchEmulator) -> None:
    # test_batch_files: text files are text/plain, contentLength is a string, the file URL
    # header is percent-encoded, DELETE of a task file and of a node file is 200
    assert create_pool(client, "files", targetDedicatedNodes=1).status == 201
    assert send(client, "POST", "/jobs", {"id": "batch", "poolInfo": {"poolId": "files"}}).status == 201
    task = {"id": "test_task", "commandLine": "/bin/echo hello world"}
    assert send(client, "POST", "/jobs/batch/tasks", task).status == 201
    assert emulator.wait_idle(30)
    done = send(client, "GET", "/jobs/batch/tasks/test_task").body
    assert (done["state"], done["executionInfo"]["exitCode"]) == ("completed", 0)

    listed = send(client, "GET", "/jobs/batch/tasks/test_task/files").body
    assert listed["odata.metadata"].endswith("/$metadata#files")
    by_name = {f["name"]: f for f in listed["value"]}
    stdout = by_name["stdout.txt"]
    assert stdout["isDirectory"] is False
    assert stdout["url"].endswith("/jobs/batch/tasks/test_task/files/stdout.txt")
    assert (stdout["properties"]["contentLength"], stdout["properties"]["contentType"]) == (
        "12",
        "text/plain",
    )
    assert by_name["wd"]["isDirectory"] is True
    assert "properties" not in by_name["wd"]

    head = send(client, "HEAD", "/jobs/batch/tasks/test_task/files/stdout.txt")
    assert (head.status, head.headers["Content-Type"], head.headers["Content-Length"]) == (
        200,
        "text/plain",
        "12",
    )
    assert head.headers["ocp-batch-file-isdirectory"] == "False"
    assert head.headers["ocp-batch-file-url"].startswith("http%3A%2F%2F")
    assert head.headers["ocp-batch-file-url"].endswith(
        "%2Fjobs%2Fbatch%2Ftasks%2Ftest_task%2Ffiles%2Fstdout.txt"
    )

    # the unmodified client reads the same properties
    [prop] = [f for f in client.list_task_files("batch", "test_task") if f.name == "stdout.txt"]
    assert prop.properties is not None and prop.properties.content_length == 12
    assert b"".join(client.download_task_file("batch", "test_task", "stdout.txt")) == b"hello world\n"
    props = client.get_task_file_properties("batch", "test_task", "stdout.txt")
    assert props.content_length == 12

    client.delete_task_file("batch", "test_task", "stderr.txt")  # 200, as the service answers
    names = [f["name"] for f in send(client, "GET", "/jobs/batch/tasks/test_task/files").body["value"]]
    assert "stderr.txt" not in names and "stdout.txt" in names
    again = send(client, "DELETE", "/jobs/batch/tasks/test_task/files/stderr.txt")
    assert (again.status, again.body["code"]) == (404, "FileNotFound")
    assert send(client, "DELETE", "/jobs/batch/tasks/test_task/files/wd").status == 200  # an empty directory

    node_id = done["nodeInfo"]["nodeId"]
    node_files = send(client, "GET", f"/pools/files/nodes/{node_id}/files?recursive=true").body["value"]
    task_stdout = next(f["name"] for f in node_files if f["name"].endswith("test_task/stdout.txt"))
    keep = send(client, "DELETE", f"/pools/files/nodes/{node_id}/files/{task_stdout.rsplit('/', 1)[0]}")
    assert (keep.status, keep.body["code"]) == (409, "DirectoryNotEmpty")
    gone = send(client, "DELETE", f"/pools/files/nodes/{node_id}/files/{task_stdout}")
    assert gone.status == 200
    assert send(client, "HEAD", f"/pools/files/nodes/{node_id}/files/{task_stdout}").status == 404
    recursive = send(
        client, "DELETE", f"/pools/files/nodes/{node_id}/files/{task_stdout.rsplit('/', 1)[0]}?recursive=true"
    )
    assert recursive.status == 200
