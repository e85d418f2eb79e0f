"""The values the Batch service fills in, one table per model, applied in one place.

An answer of the service carries properties the request never set: a pool's
``resizeTimeout`` (``PT15M``), an auto pool's ``keepAlive`` (false), a job preparation
task's ``id`` (``jobpreparation``), a data disk's ``caching`` (``none``), the auto user a
task runs as, and more. The tables below hold those values as the service answers them
(read from the service's answers to the official ``azure-batch`` SDK tests, recorded in
the public repository Azure/azure-sdk-assets, ``python/sdk/batch/azure-batch/tests/recordings``,
and from the REST API reference, https://learn.microsoft.com/rest/api/batchservice/).

:func:`answer` renders a stored document the way the service answers it: defaults filled
in, enum values in the service's own casing (it accepts any casing and answers
``"Spread"``, ``"Pack"``), durations in canonical form (``PT06M00S`` is answered as
``PT6M``) and secrets (user passwords) left out. The resources' ``to_json`` call it
once, on the whole document.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ._json import JSON, map_objects

#: The service's "infinite" duration.
INFINITE = "P10675199DT2H48M5.4775807S"


@dataclass(frozen=True)
class Sub:
    """The property holds a ``model`` object (or, with ``many``, a list of them); with
    ``create``, an absent object is answered with its defaults."""

    model: str
    many: bool = False
    create: bool = False


@dataclass(frozen=True)
class When:
    """A default that applies only when ``test(document, root document)`` is true."""

    value: Any
    test: Callable[[JSON, JSON], bool]


def _auto_user() -> JSON:
    return {"autoUser": {"scope": "pool", "elevationLevel": "nonadmin"}}


def _windows(_doc: JSON, root: JSON) -> bool:
    vmc = root.get("virtualMachineConfiguration") or {}
    return "windows" in str(vmc.get("nodeAgentSKUId", "")).lower()


def _autoscale(doc: JSON, _root: JSON) -> bool:
    return bool(doc.get("enableAutoScale"))


def _not_autoscale(doc: JSON, root: JSON) -> bool:
    return not _autoscale(doc, root)


def _marketplace(doc: JSON, _root: JSON) -> bool:
    return "virtualMachineImageId" not in doc


#: model -> property -> default value (copied), ``When`` or ``Sub``.
DEFAULTS: dict[str, dict[str, Any]] = {
    "BatchPool": {
        "resizeTimeout": "PT15M",
        "targetDedicatedNodes": 0,
        "targetLowPriorityNodes": 0,
        "enableAutoScale": False,
        "autoScaleEvaluationInterval": When("PT15M", _autoscale),
        "enableInterNodeCommunication": False,
        "taskSlotsPerNode": 1,
        "taskSchedulingPolicy": Sub("BatchTaskSchedulingPolicy", create=True),
        "virtualMachineConfiguration": Sub("VirtualMachineConfiguration"),
        "networkConfiguration": Sub("NetworkConfiguration"),
        "userAccounts": Sub("UserAccount", many=True),
        "startTask": Sub("BatchStartTask"),
    },
    "BatchPoolSpecification": {
        "taskSlotsPerNode": 1,
        "taskSchedulingPolicy": Sub("BatchTaskSchedulingPolicy", create=True),
        "resizeTimeout": "PT15M",
        "targetDedicatedNodes": When(0, _not_autoscale),
        "targetLowPriorityNodes": When(0, _not_autoscale),
        "enableAutoScale": False,
        "enableInterNodeCommunication": False,
        "virtualMachineConfiguration": Sub("VirtualMachineConfiguration"),
        "networkConfiguration": Sub("NetworkConfiguration"),
        "userAccounts": Sub("UserAccount", many=True),
        "startTask": Sub("BatchStartTask"),
    },
    "BatchTaskSchedulingPolicy": {"nodeFillType": "Spread", "jobDefaultOrder": "none"},
    "VirtualMachineConfiguration": {
        "imageReference": Sub("BatchVmImageReference"),
        "osDisk": Sub("BatchOsDisk"),
        "dataDisks": Sub("DataDisk", many=True),
    },
    "BatchVmImageReference": {"version": When("latest", _marketplace)},
    "BatchOsDisk": {"ephemeralOSDiskSettings": {}, "managedDisk": Sub("ManagedDisk", create=True)},
    "ManagedDisk": {"storageAccountType": "standard_lrs"},
    # A data disk answers its storage account type beside its managed disk settings,
    # or in them when the request gave any.
    "DataDisk": {
        "caching": "none",
        "storageAccountType": When("standard_lrs", lambda doc, _root: "managedDisk" not in doc),
        "managedDisk": Sub("ManagedDisk"),
    },
    "NetworkConfiguration": {
        "dynamicVNetAssignmentScope": "none",
        "endpointConfiguration": Sub("BatchPoolEndpointConfiguration"),
        "enableAcceleratedNetworking": False,
    },
    "BatchPoolEndpointConfiguration": {"inboundNATPools": Sub("InboundNatPool", many=True)},
    "InboundNatPool": {"networkSecurityGroupRules": Sub("NetworkSecurityGroupRule", many=True)},
    "NetworkSecurityGroupRule": {"sourcePortRanges": ["*"]},
    "UserAccount": {
        "elevationLevel": "nonadmin",
        "windowsUserConfiguration": When({"loginMode": "batch"}, _windows),
    },
    "BatchStartTask": {"userIdentity": _auto_user(), "maxTaskRetryCount": 0, "waitForSuccess": True},
    "BatchJob": {
        "priority": 0,
        "maxParallelTasks": -1,
        "usesTaskDependencies": False,
        "allowTaskPreemption": False,
        "onAllTasksComplete": "noaction",
        "onTaskFailure": "noaction",
        "constraints": Sub("BatchJobConstraints", create=True),
        "jobPreparationTask": Sub("BatchJobPreparationTask"),
        "jobReleaseTask": Sub("BatchJobReleaseTask"),
        "poolInfo": Sub("BatchPoolInfo"),
    },
    "BatchJobConstraints": {"maxWallClockTime": INFINITE, "maxTaskRetryCount": 0},
    "BatchJobPreparationTask": {
        "id": "jobpreparation",
        "constraints": Sub("BatchTaskConstraints", create=True),
        "userIdentity": _auto_user(),
        "waitForSuccess": True,
        "rerunOnNodeRebootAfterSuccess": True,
    },
    "BatchJobReleaseTask": {
        "id": "jobrelease",
        "maxWallClockTime": "PT15M",
        "retentionTime": "P7D",
        "userIdentity": _auto_user(),
    },
    "BatchTaskConstraints": {"maxWallClockTime": INFINITE, "retentionTime": "P7D", "maxTaskRetryCount": 0},
    "BatchPoolInfo": {"autoPoolSpecification": Sub("BatchAutoPoolSpecification")},
    "BatchAutoPoolSpecification": {"keepAlive": False, "pool": Sub("BatchPoolSpecification")},
    "BatchTask": {"userIdentity": _auto_user(), "requiredSlots": 1},
    "BatchNode": {"schedulingState": "enabled", "virtualMachineInfo": Sub("VirtualMachineInfo")},
    "VirtualMachineInfo": {"imageReference": Sub("BatchVmImageReference")},
}

#: property -> the service's casing of each value (matched case-insensitively).
ENUM_CASING: dict[str, dict[str, str]] = {
    "nodeFillType": {"spread": "Spread", "pack": "Pack"},
    "caching": {"none": "none", "readonly": "ReadOnly", "readwrite": "ReadWrite"},
}

#: Duration properties the service answers in canonical ISO 8601 form.
DURATIONS = frozenset({"resizeTimeout", "autoScaleEvaluationInterval", "maxWallClockTime", "retentionTime"})

#: Properties the service never answers (secrets).
HIDDEN = frozenset({"password"})


def canonical_duration(seconds: float) -> str:
    """``seconds`` as the service writes a duration: ``PT6M``, ``P7D``, ``PT1H30M``."""
    whole = int(seconds)
    fraction = seconds - whole
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    out = f"P{days}D" if days else "P"
    time_part = ""
    if hours:
        time_part += f"{hours}H"
    if minutes:
        time_part += f"{minutes}M"
    if secs or fraction:
        text = f"{secs + fraction:.7f}".rstrip("0").rstrip(".")
        time_part += f"{text}S"
    if time_part:
        out += "T" + time_part
    return out if out != "P" else "PT0S"


_DURATION = re.compile(r"^P(?:(?P<d>\d+)D)?(?:T(?:(?P<h>\d+)H)?(?:(?P<m>\d+)M)?(?:(?P<s>\d+(?:\.\d+)?)S)?)?$")


def _normalise_duration(value: Any) -> Any:
    if not isinstance(value, str) or value == INFINITE:
        return value
    m = _DURATION.match(value)
    if not m or value in ("P", "PT"):
        return value
    seconds = (
        int(m.group("d") or 0) * 86400
        + int(m.group("h") or 0) * 3600
        + int(m.group("m") or 0) * 60
        + float(m.group("s") or 0)
    )
    return canonical_duration(seconds)


def _fill(model: str, doc: JSON, root: JSON) -> None:
    for prop, default in DEFAULTS.get(model, {}).items():
        if isinstance(default, Sub):
            if default.create and prop not in doc:
                doc[prop] = {}
            value = doc.get(prop)
            if default.many and isinstance(value, list):
                for item in value:
                    if isinstance(item, dict):
                        _fill(default.model, item, root)
            elif not default.many and isinstance(value, dict):
                # an auto pool's pool is its own root (its OS decides user defaults)
                _fill(default.model, value, value if default.model == "BatchPoolSpecification" else root)
            continue
        if prop in doc:
            continue
        if isinstance(default, When):
            if default.test(doc, root):
                doc[prop] = copy.deepcopy(default.value)
            continue
        doc[prop] = copy.deepcopy(default)


def _tidy(node: Any) -> Any:
    """Service casing of enums, canonical durations, no secrets (at any depth)."""
    return map_objects(node, _tidy_object)


def _tidy_object(node: JSON) -> JSON:
    out: JSON = {}
    for key, value in node.items():
        if key in HIDDEN:
            continue
        if key in ENUM_CASING and isinstance(value, str):
            value = ENUM_CASING[key].get(value.lower(), value)
        elif key in DURATIONS:
            value = _normalise_duration(value)
        out[key] = _tidy(value)
    return out


def answer(model: str, doc: JSON) -> JSON:
    """``doc`` (a stored ``model`` document, not changed) as the service answers it."""
    out: JSON = _tidy(doc)
    _fill(model, out, out)
    return out
