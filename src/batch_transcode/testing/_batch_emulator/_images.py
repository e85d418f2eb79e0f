"""The images the emulated account supports, and Create Pool's refusal of the others.

List Supported Images answers :data:`SUPPORTED_IMAGES`. Create Pool (and a job's auto
pool) refuses a Marketplace image that is not among them, one past its
``batchSupportEndOfLife`` ("the time when the Azure Batch service will stop accepting
create Pool requests for the Image", REST reference, BatchSupportedImage), a retired node
agent SKU, and a node agent that is not the image's, as the service stops accepting
them: Ubuntu 20.04 images and ``batch.node.ubuntu 20.04`` after 23 April 2025 (the
retirement notice Microsoft sent, quoted in UCL/TLOmodel issue #1549), the agents of
https://github.com/Azure/Batch/issues/180 after 31 December 2024.

The service's error for such a pool is not in the REST reference. Azure answers an image
that Batch no longer supports with ``400 InvalidPropertyValue`` ("The value provided for
one of the properties in the request body is invalid.", as reported for a retired Ubuntu
20.04 container image in hashicorp/terraform issue #36698); the emulator answers the
same, its ``values`` naming the property (``imageReference`` or ``nodeAgentSKUId``) and,
in ``Reason``, why and what to use instead. Custom images (``virtualMachineImageId``) are
only checked for their form (``_state``).
"""

from __future__ import annotations

from datetime import UTC, datetime

from ._errors import BatchServiceError, invalid_value
from ._model import JSON

__all__ = ["RETIRED_IMAGES", "RETIRED_NODE_AGENTS", "SUPPORTED_IMAGES", "check_image"]


def _image(
    agent: str, publisher: str, offer: str, sku: str, os_type: str, end_of_life: str | None = None
) -> JSON:
    doc: JSON = {
        "nodeAgentSKUId": agent,
        "imageReference": {"publisher": publisher, "offer": offer, "sku": sku, "version": "latest"},
        "osType": os_type,
        "capabilities": [],
        "verificationType": "verified",
    }
    if end_of_life is not None:
        doc["batchSupportEndOfLife"] = end_of_life
    return doc


#: What List Supported Images answers: current marketplace images and their node agents.
#: ``batchSupportEndOfLife`` is "the time when the Azure Batch service will stop
#: accepting create Pool requests for the Image" (REST reference, BatchSupportedImage);
#: a retired agent's images are gone from the list: Ubuntu 20.04 (``batch.node.ubuntu
#: 20.04``, retired 2025-04-23) is not here, and Ubuntu 22.04 ends on 2027-06-30
#: (retirement notice https://github.com/Azure/Batch/issues/200).
SUPPORTED_IMAGES: list[JSON] = [
    _image("batch.node.ubuntu 24.04", "canonical", "ubuntu-24_04-lts", "server", "linux"),
    _image("batch.node.ubuntu 24.04", "canonical", "ubuntu-24_04-lts", "server-gen1", "linux"),
    _image(
        "batch.node.ubuntu 22.04",
        "canonical",
        "0001-com-ubuntu-server-jammy",
        "22_04-lts",
        "linux",
        "2027-06-30T00:00:00Z",
    ),
    _image(
        "batch.node.ubuntu 22.04",
        "canonical",
        "0001-com-ubuntu-server-jammy",
        "22_04-lts-gen2",
        "linux",
        "2027-06-30T00:00:00Z",
    ),
    # container- and HPC-ready Ubuntu 24.04 (the migration target the 22.04 notice names)
    _image("batch.node.ubuntu 24.04", "microsoft-dsvm", "ubuntu-hpc", "2404", "linux"),
    _image("batch.node.debian 12", "debian", "debian-12", "12", "linux"),
    _image("batch.node.debian 12", "debian", "debian-12", "12-gen2", "linux"),
    _image(
        "batch.node.windows amd64", "microsoftwindowsserver", "windowsserver", "2022-datacenter", "windows"
    ),
    _image(
        "batch.node.windows amd64", "microsoftwindowsserver", "windowsserver", "2022-datacenter-g2", "windows"
    ),
    _image(
        "batch.node.windows amd64",
        "microsoftwindowsserver",
        "windowsserver",
        "2022-datacenter-smalldisk",
        "windows",
    ),
]


#: Marketplace images (publisher, offer, sku; lower case) Batch retired, with the day it
#: stopped accepting pools of them: the Ubuntu 20.04 images of the retirement notice.
RETIRED_IMAGES: dict[tuple[str, str, str], str] = dict.fromkeys(
    [
        ("canonical", "0001-com-ubuntu-server-focal", "20_04-lts"),
        ("canonical", "0001-com-ubuntu-server-focal", "20_04-lts-gen2"),
        ("microsoft-dsvm", "ubuntu-2004", "2004"),
        ("microsoft-dsvm", "ubuntu-2004", "2004-gen2"),
        ("microsoft-dsvm", "ubuntu-hpc", "2004"),
        ("microsoft-azure-batch", "ubuntu-server-container", "20-04-lts"),
        ("microsoft-azure-batch", "ubuntu-server-container-rdma", "20-04-lts"),
    ],
    "2025-04-23",
)

#: Node agent SKUs Batch retired, with the day it stopped accepting pools of them.
RETIRED_NODE_AGENTS: dict[str, str] = {
    "batch.node.ubuntu 20.04": "2025-04-23",
    **dict.fromkeys(
        [
            "batch.node.centos 7",
            "batch.node.centos 8",
            "batch.node.debian 8",
            "batch.node.debian 9",
            "batch.node.debian 10",
            "batch.node.ubuntu 14.04",
            "batch.node.ubuntu 16.04",
            "batch.node.ubuntu 18.04",
        ],
        "2024-12-31",
    ),
}

_CURRENT = "canonical / ubuntu-24_04-lts / server (or server-gen1) with node agent batch.node.ubuntu 24.04"


def _refused(prop: str, value: str, reason: str) -> BatchServiceError:
    return invalid_value(
        prop, value, f"{reason} Use an image that List Supported Images returns, such as {_CURRENT}."
    )


def _key(image: JSON) -> tuple[str, str, str]:
    publisher, offer, sku = (str(image.get(k, "")).lower() for k in ("publisher", "offer", "sku"))
    return publisher, offer, sku


def check_image(spec: JSON, now: datetime | None = None) -> None:
    """Refuse a pool ``spec`` whose Marketplace image or node agent the account does not
    (or no longer) support: ``InvalidPropertyValue`` (see the module docstring)."""
    vmc = spec.get("virtualMachineConfiguration") or {}
    image = vmc.get("imageReference") or {}
    if not vmc or "virtualMachineImageId" in image:
        return
    stamp = now or datetime.now(UTC)
    agent = str(vmc.get("nodeAgentSKUId", ""))
    retired = RETIRED_NODE_AGENTS.get(agent.lower())
    if retired is not None:
        raise _refused(
            "nodeAgentSKUId", agent, f"The node agent SKU {agent} reached its end of life on {retired}."
        )
    key = _key(image)
    shown = "/".join(key)
    if key in RETIRED_IMAGES:
        raise _refused(
            "imageReference", shown, f"The image {shown} reached its end of life on {RETIRED_IMAGES[key]}."
        )
    entry = next((i for i in SUPPORTED_IMAGES if _key(i["imageReference"]) == key), None)
    if entry is None:
        raise _refused("imageReference", shown, f"The image {shown} is not supported by Azure Batch.")
    end = entry.get("batchSupportEndOfLife")
    if end is not None and datetime.fromisoformat(end) <= stamp:
        raise _refused("imageReference", shown, f"The image {shown} reached its end of life on {end[:10]}.")
    if str(entry["nodeAgentSKUId"]).lower() != agent.lower():
        raise invalid_value(
            "nodeAgentSKUId",
            agent,
            f"The image {shown} runs with the node agent SKU {entry['nodeAgentSKUId']}, "
            f"not {agent or 'none'}.",
        )
