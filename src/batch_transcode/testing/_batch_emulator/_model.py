"""In-memory resources of the emulated account: pools, nodes, jobs, tasks."""

from __future__ import annotations

import copy
import itertools
import subprocess
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path
from typing import Any

from ._defaults import DEFAULTS, answer
from ._dependencies import ExitCondition
from ._dependencies import dependency_action as resolve_dependency_action
from ._task_table import TaskTable

JSON = dict[str, Any]

_etag_counter = itertools.count(1)


def now() -> datetime:
    return datetime.now(UTC)


def iso(t: datetime | None) -> str | None:
    if t is None:
        return None
    return t.strftime("%Y-%m-%dT%H:%M:%S.%f") + "0Z"


def rfc1123(t: datetime) -> str:
    return format_datetime(t, usegmt=True)


def new_etag() -> str:
    return f"0x8DD{next(_etag_counter):013X}"


def _drop_none(doc: JSON) -> JSON:
    return {k: v for k, v in doc.items() if v is not None}


@dataclass
class Resource:
    """What pools, nodes, jobs and tasks all have: an id, an ETag, times, and a state
    with the time it was entered."""

    id: str
    etag: str = field(default_factory=new_etag)
    last_modified: datetime = field(default_factory=now)
    creation_time: datetime = field(default_factory=now)
    state: str = "active"
    state_time: datetime = field(default_factory=now)

    def touch(self) -> None:
        self.etag = new_etag()
        self.last_modified = now()

    def set_state(self, state: str) -> None:
        """Enter ``state``; a new ETag if that changes it."""
        if state != self.state:
            self.state = state
            self.state_time = now()
            self.touch()

    def _properties(self, url: str | None) -> JSON:
        """The properties every pool, job and task answers with, in the service's order."""
        return {
            "id": self.id,
            "url": url,
            "eTag": self.etag,
            "lastModified": iso(self.last_modified),
            "creationTime": iso(self.creation_time),
            "state": self.state,
            "stateTransitionTime": iso(self.state_time),
        }


@dataclass
class _Tracked(Resource):
    """A resource that answers with its previous state too (jobs and tasks)."""

    previous_state: str | None = None
    previous_state_time: datetime | None = None

    def set_state(self, state: str) -> None:
        """Enter ``state``, remembering the one left; a new ETag even if the state stays."""
        if state == self.state:
            self.touch()
            return
        self.previous_state = self.state
        self.previous_state_time = self.state_time
        super().set_state(state)

    def _properties(self, url: str | None) -> JSON:
        return {
            **super()._properties(url),
            "previousState": self.previous_state,
            "previousStateTransitionTime": iso(self.previous_state_time),
        }


@dataclass
class Node(Resource):
    pool_id: str = ""
    dedicated: bool = True
    state: str = "creating"
    ready_at: float = 0.0  # monotonic time the VM is up
    root: Path = Path()
    running: dict[str, int] = field(default_factory=dict)  # "job/task" -> slots
    start_task_info: JSON | None = None
    total_run: int = 0
    total_succeeded: int = 0
    recent: list[JSON] = field(default_factory=list)
    preempted_until: float = 0.0
    start_proc: subprocess.Popen[bytes] | None = None

    def used_slots(self) -> int:
        return sum(self.running.values())

    def to_json(self, endpoint: str, pool: Pool) -> JSON:
        doc: JSON = {
            "id": self.id,
            "url": f"{endpoint}/pools/{pool.id}/nodes/{self.id}",
            "state": self.state,
            "schedulingState": "enabled",
            "stateTransitionTime": iso(self.state_time),
            "lastBootTime": iso(self.creation_time),
            "allocationTime": iso(self.creation_time),
            "ipAddress": "10.0.0.4",
            "affinityId": f"TVM:{self.id}",
            "vmSize": pool.spec.get("vmSize"),
            "totalTasksRun": self.total_run,
            "runningTasksCount": len(self.running),
            "runningTaskSlotsCount": self.used_slots(),
            "totalTasksSucceeded": self.total_succeeded,
            "recentTasks": list(self.recent) or None,
            "startTask": copy.deepcopy(pool.spec.get("startTask")),
            "startTaskInfo": copy.deepcopy(self.start_task_info),
            "isDedicated": self.dedicated,
            "nodeAgentInfo": {"version": "1.12.1", "lastUpdateTime": iso(self.creation_time)},
            "endpointConfiguration": self._endpoints(pool),
            "virtualMachineInfo": {"imageReference": self._image(pool)},
        }
        return answer("BatchNode", _drop_none(doc))

    def _image(self, pool: Pool) -> JSON | None:
        image = (pool.spec.get("virtualMachineConfiguration") or {}).get("imageReference")
        if not image:
            return None
        out = dict(image)
        if "virtualMachineImageId" not in out:
            out["exactVersion"] = out.get("version", "latest")
        return out

    def _endpoints(self, pool: Pool) -> JSON | None:
        """The node's inbound endpoints: one per inbound NAT pool of the pool, named
        ``<pool name>.<node index>``, on the next front-end port of the pool's range."""
        nat_pools = ((pool.spec.get("networkConfiguration") or {}).get("endpointConfiguration") or {}).get(
            "inboundNATPools"
        ) or []
        if not nat_pools:
            return None
        index = list(pool.nodes).index(self.id) if self.id in pool.nodes else 0
        return {
            "inboundEndpoints": [
                {
                    "name": f"{nat['name']}.{index}",
                    "protocol": nat.get("protocol", "tcp"),
                    "publicIPAddress": "20.0.0.4",
                    "publicFQDN": f"dns{pool.id.lower()}-azurebatch-cloudservice.emulated.batch.test",
                    "frontendPort": int(nat.get("frontendPortRangeStart", 0)) + index,
                    "backendPort": nat.get("backendPort"),
                }
                for nat in nat_pools
            ]
        }


@dataclass
class Pool(Resource):
    spec: JSON = field(default_factory=dict)
    allocation_state: str = "steady"
    allocation_time: datetime = field(default_factory=now)
    target_dedicated: int = 0
    target_low_priority: int = 0
    resize_due: float = 0.0
    resize_errors: list[JSON] = field(default_factory=list)
    nodes: dict[str, Node] = field(default_factory=dict)
    delete_due: float = 0.0
    auto_for_job: str | None = None
    node_counter: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    @property
    def slots_per_node(self) -> int:
        return int(self.spec.get("taskSlotsPerNode", 1))

    @property
    def path(self) -> str:
        """The pool's URL path (after the account endpoint)."""
        return f"/pools/{self.id}"

    def set_allocation(self, state: str) -> None:
        if state != self.allocation_state:
            self.allocation_state = state
            self.allocation_time = now()
            self.touch()

    def new_node_id(self) -> str:
        return f"tvmps_{uuid.uuid4().hex[:20]}_{next(self.node_counter)}d"

    def snapshot(self) -> PoolSnapshot:
        return PoolSnapshot(
            id=self.id,
            state=self.state,
            allocation_state=self.allocation_state,
            node_states={n.id: n.state for n in self.nodes.values()},
            resize_errors=copy.deepcopy(self.resize_errors),
            auto_for_job=self.auto_for_job,
            metadata=metadata_dict(self.spec),
        )

    def to_json(self, endpoint: str) -> JSON:
        doc = copy.deepcopy(self.spec)
        doc.update(
            {
                **self._properties(endpoint + self.path),
                "allocationState": self.allocation_state,
                "allocationStateTransitionTime": iso(self.allocation_time),
                "resizeErrors": copy.deepcopy(self.resize_errors) or None,
                "currentDedicatedNodes": sum(1 for n in self.nodes.values() if n.dedicated),
                "currentLowPriorityNodes": sum(1 for n in self.nodes.values() if not n.dedicated),
                "targetDedicatedNodes": self.target_dedicated,
                "targetLowPriorityNodes": self.target_low_priority,
                "enableAutoScale": bool(self.spec.get("enableAutoScale", False)),
                "taskSlotsPerNode": self.slots_per_node,
            }
        )
        return answer("BatchPool", _drop_none(doc))


@dataclass
class Task(_Tracked):
    job_id: str = ""
    spec: JSON = field(default_factory=dict)
    execution: JSON = field(default_factory=lambda: {"retryCount": 0, "requeueCount": 0})
    node_info: JSON | None = None
    node_key: tuple[str, str] | None = None  # (pool id, node id) while running
    last_node: tuple[str, str] | None = None  # where its files are
    proc: subprocess.Popen[bytes] | None = None
    kill_reason: str | None = None
    run_serial: int = 0
    #: Once completed: "satisfy" or "block", what the task does to the tasks that depend on it.
    dependency_action: str | None = None
    #: The job's table of tasks, told of every change of state (set when added to it).
    table: TaskTable[Task] | None = field(default=None, repr=False, compare=False)

    def set_state(self, state: str) -> None:
        old = self.state
        super().set_state(state)
        if self.table is not None and state != old:
            self.table.moved(self, old)

    @property
    def path(self) -> str:
        return f"/jobs/{self.job_id}/tasks/{self.id}"

    @property
    def required_slots(self) -> int:
        return int(self.spec.get("requiredSlots", 1))

    def complete(
        self, *, result: str, failure: tuple[str, str, str] | None, condition: ExitCondition = "exitCode"
    ) -> None:
        """Move to ``completed`` with ``result``; ``failure`` is (category, code, message);
        ``condition`` is how the task ended, for its exit conditions (see ``_dependencies``)."""
        self.dependency_action = resolve_dependency_action(
            self.spec,
            succeeded=result == "success",
            exit_code=self.execution.get("exitCode"),
            condition=condition,
        )
        self.execution["endTime"] = iso(now())
        self.execution["result"] = result
        if failure is not None:
            category, code, message = failure
            self.execution["failureInfo"] = {
                "category": category,
                "code": code,
                "message": message,
                "details": [{"name": "Message", "value": message}],
            }
        else:
            self.execution.pop("failureInfo", None)
        self.set_state("completed")

    def satisfies_dependents(self) -> bool:
        """Whether the task completed in a way that satisfies the tasks that depend on it."""
        return self.state == "completed" and self.dependency_action == "satisfy"

    def _fields(self, job: Job, url: str | None = None) -> JSON:
        """The task's properties as the service answers them, sharing this task's own
        structures (no copies): read them, never change them."""
        # a task's retry count defaults to its job's (the other defaults: the table)
        job_constraints = job.spec.get("constraints") or {}
        constraints = {
            **DEFAULTS["BatchTaskConstraints"],
            "maxTaskRetryCount": int(job_constraints.get("maxTaskRetryCount", 0)),
            **(self.spec.get("constraints") or {}),
        }
        return {
            **self.spec,
            **self._properties(url),
            "constraints": constraints,
            "requiredSlots": self.required_slots,
            "executionInfo": _drop_none(self.execution),
            "nodeInfo": self.node_info,
        }

    def filter_view(self, job: Job) -> Mapping[str, Any]:
        """What a ``$filter`` is evaluated on: the properties of :meth:`to_json`, made only
        when asked for and never copied (a listing filters every task, and renders only
        those it returns)."""
        return _TaskView(self, job)

    def to_json(self, endpoint: str, job: Job) -> JSON:
        return answer("BatchTask", _drop_none(self._fields(job, f"{endpoint}/jobs/{job.id}/tasks/{self.id}")))

    def snapshot(self) -> TaskSnapshot:
        return TaskSnapshot(
            id=self.id,
            job_id=self.job_id,
            state=self.state,
            exit_code=self.execution.get("exitCode"),
            result=self.execution.get("result"),
            retry_count=int(self.execution.get("retryCount", 0)),
            requeue_count=int(self.execution.get("requeueCount", 0)),
            node_id=(self.node_info or {}).get("nodeId"),
        )


class _TaskView(Mapping[str, Any]):
    """A task's properties for a ``$filter``: ``id``, ``state`` and ``stateTransitionTime``
    (as the instant it renders) straight from the task, the others from one uncopied
    render made the first time one is asked for."""

    __slots__ = ("_job", "_rest", "_task")

    def __init__(self, task: Task, job: Job) -> None:
        self._task, self._job = task, job
        self._rest: JSON | None = None

    def _all(self) -> JSON:
        if self._rest is None:
            self._rest = _drop_none(self._task._fields(self._job))
        return self._rest

    def __getitem__(self, key: str) -> Any:
        if key == "state":
            return self._task.state
        if key == "stateTransitionTime":
            return self._task.state_time
        if key == "id":
            return self._task.id
        return self._all()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._all())

    def __len__(self) -> int:
        return len(self._all())


@dataclass
class Job(_Tracked):
    spec: JSON = field(default_factory=dict)
    pool_id: str = ""
    auto_pool: bool = False
    tasks: TaskTable[Task] = field(default_factory=TaskTable)  # lower-case id -> task
    end_time: datetime | None = None
    terminate_reason: str | None = None
    delete_due: float = 0.0
    deadline: float | None = None  # monotonic maxWallClockTime expiry
    #: Lower-case ids of deleted tasks that had satisfied their dependents (see ``_dependencies``).
    satisfied_ids: set[str] = field(default_factory=set)

    def snapshot(self) -> JobSnapshot:
        return JobSnapshot(
            id=self.id,
            state=self.state,
            pool_id=self.pool_id,
            terminate_reason=self.terminate_reason,
            metadata=metadata_dict(self.spec),
        )

    def to_json(self, endpoint: str) -> JSON:
        doc = copy.deepcopy(self.spec)
        execution: JSON = {
            "startTime": iso(self.creation_time),
            "endTime": iso(self.end_time),
            "poolId": self.pool_id or None,
            "terminateReason": self.terminate_reason,
        }
        doc.update({**self._properties(endpoint + self.path), "executionInfo": _drop_none(execution)})
        return answer("BatchJob", _drop_none(doc))

    @property
    def path(self) -> str:
        return f"/jobs/{self.id}"


@dataclass(frozen=True)
class _Snapshot:
    """What pool and job snapshots share: copies, safe to keep after the call."""

    id: str
    state: str


@dataclass(frozen=True)
class PoolSnapshot(_Snapshot):
    """A pool as :meth:`BatchEmulator.pools` reports it."""

    allocation_state: str
    metadata: dict[str, str]
    node_states: dict[str, str]
    resize_errors: list[JSON]
    auto_for_job: str | None


@dataclass(frozen=True)
class JobSnapshot(_Snapshot):
    """A job as :meth:`BatchEmulator.jobs` reports it."""

    pool_id: str
    metadata: dict[str, str]
    terminate_reason: str | None


@dataclass(frozen=True)
class TaskSnapshot:
    """A task as :meth:`BatchEmulator.tasks` reports it."""

    id: str
    job_id: str
    state: str
    exit_code: int | None
    result: str | None
    retry_count: int
    requeue_count: int
    node_id: str | None
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class NodeRecord:
    """One node's life in a pool, as :meth:`BatchEmulator.node_log` reports it: allocated
    (the ``allocationTime`` the node reports) and removed (its pool deleted or resized
    down; ``None`` while it is allocated)."""

    pool_id: str
    node_id: str
    dedicated: bool
    allocated: datetime
    removed: datetime | None = None


def metadata_dict(spec: JSON) -> dict[str, str]:
    return {m["name"]: m["value"] for m in spec.get("metadata") or []}
