"""Create Pool refuses images and node agents past their end of life or unknown to List
Supported Images, with the service's 400 InvalidPropertyValue; auto pools too."""

from __future__ import annotations

import datetime as dt

import pytest
from azure.batch import BatchClient
from azure.batch import models as bm
from azure.core.exceptions import HttpResponseError

from batch_transcode.testing import BatchEmulator
from batch_transcode.testing._batch_emulator._errors import BatchServiceError
from batch_transcode.testing._batch_emulator._images import check_image


def _vm(publisher: str, offer: str, sku: str, agent: str) -> bm.VirtualMachineConfiguration:
    return bm.VirtualMachineConfiguration(
        image_reference=bm.BatchVmImageReference(publisher=publisher, offer=offer, sku=sku, version="latest"),
        node_agent_sku_id=agent,
    )


FOCAL = _vm("canonical", "0001-com-ubuntu-server-focal", "20_04-lts", "batch.node.ubuntu 20.04")
NOBLE = _vm("canonical", "ubuntu-24_04-lts", "server", "batch.node.ubuntu 24.04")


def _values(exc: HttpResponseError) -> dict[str, str]:
    body = exc.response.json() if exc.response is not None else {}
    return {v["key"]: v["value"] for v in body.get("values", [])}


def _create(client: BatchClient, vm: bm.VirtualMachineConfiguration) -> HttpResponseError:
    with pytest.raises(HttpResponseError) as refused:
        client.create_pool(
            bm.BatchPoolCreateOptions(
                id="p", vm_size="standard_d2s_v3", virtual_machine_configuration=vm, target_dedicated_nodes=1
            )
        )
    assert refused.value.status_code == 400 and refused.value.error is not None
    assert refused.value.error.code == "InvalidPropertyValue"
    return refused.value


def test_a_retired_image_is_refused_at_create_pool(client: BatchClient, emulator: BatchEmulator) -> None:
    values = _values(_create(client, FOCAL))
    assert values["PropertyName"] == "nodeAgentSKUId"
    assert values["PropertyValue"] == "batch.node.ubuntu 20.04"
    assert "end of life on 2025-04-23" in values["Reason"] and "batch.node.ubuntu 24.04" in values["Reason"]
    # the image itself, even with a current agent
    image_only = _vm("canonical", "0001-com-ubuntu-server-focal", "20_04-lts", "batch.node.ubuntu 24.04")
    values = _values(_create(client, image_only))
    assert values["PropertyName"] == "imageReference" and "2025-04-23" in values["Reason"]
    assert emulator.pools() == []  # nothing was made, no node started


def test_an_unknown_image_and_a_mismatched_agent_are_refused(client: BatchClient) -> None:
    values = _values(_create(client, _vm("contoso", "no-such-offer", "1", "batch.node.ubuntu 24.04")))
    assert values["PropertyName"] == "imageReference"
    assert "contoso/no-such-offer/1 is not supported" in values["Reason"]
    values = _values(_create(client, _vm("canonical", "ubuntu-24_04-lts", "server", "batch.node.debian 12")))
    assert values["PropertyName"] == "nodeAgentSKUId"
    assert "batch.node.ubuntu 24.04" in values["Reason"]
    # the supported pairing goes through, whatever the case of the names
    client.create_pool(
        bm.BatchPoolCreateOptions(
            id="ok",
            vm_size="standard_d2s_v3",
            virtual_machine_configuration=_vm(
                "Canonical", "Ubuntu-24_04-LTS", "server", "batch.node.ubuntu 24.04"
            ),
        )
    )
    assert client.get_pool("ok").id == "ok"


def test_an_auto_pool_with_a_retired_image_is_refused(client: BatchClient, emulator: BatchEmulator) -> None:
    auto = bm.BatchAutoPoolSpecification(
        pool_lifetime_option="job",
        pool=bm.BatchPoolSpecification(vm_size="standard_d2s_v3", virtual_machine_configuration=FOCAL),
    )
    with pytest.raises(HttpResponseError) as refused:
        client.create_job(
            bm.BatchJobCreateOptions(id="j", pool_info=bm.BatchPoolInfo(auto_pool_specification=auto))
        )
    assert refused.value.error is not None and refused.value.error.code == "InvalidPropertyValue"
    assert emulator.jobs() == [] and emulator.pools() == []


def test_an_image_past_its_listed_end_of_life_is_refused() -> None:
    jammy = {
        "virtualMachineConfiguration": {
            "imageReference": {
                "publisher": "canonical",
                "offer": "0001-com-ubuntu-server-jammy",
                "sku": "22_04-lts",
            },
            "nodeAgentSKUId": "batch.node.ubuntu 22.04",
        }
    }
    check_image(jammy, dt.datetime(2027, 6, 29, tzinfo=dt.UTC))  # still accepted
    with pytest.raises(BatchServiceError) as refused:
        check_image(jammy, dt.datetime(2027, 7, 1, tzinfo=dt.UTC))
    assert refused.value.status == 400 and refused.value.code == "InvalidPropertyValue"
    assert "end of life on 2027-06-30" in refused.value.values["Reason"]
    # custom images are only checked for their form elsewhere
    check_image({"virtualMachineConfiguration": {"imageReference": {"virtualMachineImageId": "/x"}}})
