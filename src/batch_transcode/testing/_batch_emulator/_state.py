"""The state of one emulated Batch account and the changes more than one concern makes to it.

:class:`AccountState` holds the pools and jobs (with their nodes and tasks), the lock
that guards them, the condition the scheduler waits on, the fault injector and the
worker threads. Its methods look resources up (answering ``PoolNotFound``,
``JobNotFound``, ... as the service does) and make the state changes that both the REST
operations and the scheduler make: creating and resizing a pool, deleting a pool,
evicting a node's work, terminating a job, deleting a job's auto pool.

Callers hold :attr:`AccountState.lock` around everything but :meth:`AccountState.spawn`
and :meth:`AccountState.join_workers`.

Autoscale formulas are not evaluated (Evaluate Pool Autoscale answers a formula of
constant assignments exactly; an approximation of "Create an automatic formula
for scaling compute nodes in a Batch pool",
https://learn.microsoft.com/azure/batch/batch-automatic-scaling): a pool with
``enableAutoScale`` gets ``min(pending tasks, cap)`` nodes, where pending tasks are the
active and running tasks of the active jobs on the pool and ``cap`` is the largest
integer literal in the formula (10 if there is none). The nodes are Spot when the formula
sets only ``$TargetLowPriorityNodes``, dedicated otherwise.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Literal, NotRequired, TypedDict, TypeVar

from batch_transcode._process import kill_process_group

from ._errors import BatchServiceError, being_deleted, invalid_value, not_found
from ._executor import NodeStorage
from ._faults import FaultInjector, Faults
from ._images import check_image
from ._model import JSON, Job, Node, NodeRecord, Pool, Resource, Task, now
from ._odata import duration_seconds

LOG = logging.getLogger(__name__)

DELETE_DELAY = 0.3  # seconds a pool or job stays in "deleting"
STOP_DELAY = 0.3  # seconds a pool stays "stopping" after Stop Pool Resize

#: The subscription the emulated account lives in (a made-up id): a subnet of another
#: subscription cannot be used, as in the service.
SUBSCRIPTION_ID = "5e1f7a3c-0b2d-4c6e-9f8a-1d3b5c7e9a0b"

PoolAllocationMode = Literal["BatchService", "UserSubscription"]
POOL_ALLOCATION_MODES: tuple[str, ...] = ("BatchService", "UserSubscription")

# Create Pool's virtualMachineImageId forms (REST reference, ImageReference):
# a managed image, or an Azure Compute Gallery image (with or without a version).
_IMAGE_ID = re.compile(
    r"^/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft\.Compute/"
    r"(?:images/[^/]+|galleries/[^/]+/images/[^/]+(?:/versions/[^/]+)?)$",
    re.IGNORECASE,
)
_IMAGE_ID_REASON = (
    "The specified resource id must be of the format "
    "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Compute/"
    "images/{imageName}, "
    "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Compute/galleries/"
    "{galleryName}/images/{galleryImageName}/versions/{galleryImageVersionName}, or "
    "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Compute/galleries/"
    "{galleryName}/images/{galleryImageName}"
)
_LITERAL_FORMULA = re.compile(
    r"^\s*(?:\$(?:TargetDedicatedNodes|TargetLowPriorityNodes|NodeDeallocationOption)\s*=\s*\w+\s*;?\s*)+$"
)
_SUBNET_SUBSCRIPTION = re.compile(r"^/subscriptions/([^/]+)/", re.IGNORECASE)


_R = TypeVar("_R", bound=Resource)


def _look_up(resources: Mapping[str, _R], key: str, kind: str, ident: str) -> _R:
    """The resource under ``key``, or ``<kind>NotFound`` (for the id ``ident`` asked for)."""
    res = resources.get(key)
    if res is None:
        raise not_found(kind, ident)
    return res


def _writable(res: _R, kind: str) -> _R:
    """``res`` unless it is being deleted (then ``<kind>BeingDeleted``)."""
    if res.state == "deleting":
        raise being_deleted(kind)
    return res


class AccountSettings(TypedDict):
    """The keyword arguments of :class:`AccountState`, for the classes built on it."""

    account: str
    workdir: Path
    faults: Faults
    allocation_delay: float
    pool_allocation_mode: NotRequired[PoolAllocationMode]


class AccountState:
    """Pools, jobs, the lock over them, and the worker threads of one emulated account."""

    def __init__(
        self,
        *,
        account: str,
        workdir: Path,
        faults: Faults,
        allocation_delay: float,
        pool_allocation_mode: PoolAllocationMode = "UserSubscription",
    ) -> None:
        self.account = account
        #: "BatchService" (the default kind of account: no Spot nodes since 30 September
        #: 2025) or "UserSubscription" (Spot nodes allocate).
        self.pool_allocation_mode: PoolAllocationMode = pool_allocation_mode
        self.workdir = workdir
        self.endpoint = ""
        self.allocation_delay = allocation_delay
        self.injector = FaultInjector(faults)
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self.pools: dict[str, Pool] = {}  # lower-case id -> pool
        self.jobs: dict[str, Job] = {}  # lower-case id -> job
        self.stopping = threading.Event()
        #: How nodes reach Blob Storage (CA, node identities); set by the emulator.
        self.node_storage = NodeStorage()
        self._threads: set[threading.Thread] = set()
        #: Every node's allocation and removal, by (pool id, node id), in allocation order.
        self._node_log: dict[tuple[str, str], NodeRecord] = {}

    # ------------------------------------------------------------------ node log

    def node_allocated(self, pool: Pool, node: Node) -> None:
        """Log ``node``'s allocation (its ``allocationTime``). Under the lock."""
        self._node_log[(pool.id, node.id)] = NodeRecord(
            pool_id=pool.id, node_id=node.id, dedicated=node.dedicated, allocated=node.creation_time
        )

    def nodes_removed(self, pool: Pool, nodes: Iterable[Node]) -> None:
        """Log the removal of ``nodes`` from ``pool`` now. Under the lock."""
        when = now()
        for node in nodes:
            record = self._node_log.get((pool.id, node.id))
            if record is not None and record.removed is None:
                self._node_log[(pool.id, node.id)] = dataclasses.replace(record, removed=when)

    def node_log(self) -> list[NodeRecord]:
        with self.lock:
            return list(self._node_log.values())

    # ------------------------------------------------------------------ worker threads

    def spawn(self, target: Callable[[], None], name: str) -> None:
        """Run ``target`` in a daemon thread that :meth:`join_workers` waits for."""

        def run() -> None:
            try:
                target()
            except Exception:
                LOG.exception("emulator worker %s failed", name)
            finally:
                with self.lock:
                    self._threads.discard(threading.current_thread())
                    self.changed.notify_all()

        t = threading.Thread(target=run, name=name, daemon=True)
        with self.lock:
            self._threads.add(t)
        t.start()

    def join_workers(self, timeout: float) -> None:
        for t in list(self._threads):
            t.join(timeout=timeout)

    # ------------------------------------------------------------------ look-ups

    def pool(self, pool_id: str) -> Pool:
        return _look_up(self.pools, pool_id.lower(), "Pool", pool_id)

    def writable_pool(self, pool_id: str) -> Pool:
        return _writable(self.pool(pool_id), "Pool")

    def node(self, pool: Pool, node_id: str) -> Node:
        return _look_up(pool.nodes, node_id, "Node", node_id)

    def node_root(self, pool_id: str, node_id: str) -> Path:
        """The directory that is the node's disk."""
        return self.workdir / "nodes" / pool_id / node_id

    def job(self, job_id: str) -> Job:
        return _look_up(self.jobs, job_id.lower(), "Job", job_id)

    def writable_job(self, job_id: str) -> Job:
        return _writable(self.job(job_id), "Job")

    def task(self, job: Job, task_id: str) -> Task:
        return _look_up(job.tasks, task_id.lower(), "Task", task_id)

    # ------------------------------------------------------------------ pools

    def new_pool(self, pool_id: str, spec: JSON, auto_for_job: str | None = None) -> Pool:
        """Add a pool (Create Pool, or a job's auto pool) and start allocating its nodes."""
        self._check_pool_references(spec)
        for prop in ("resizeTimeout", "autoScaleEvaluationInterval"):
            if prop in spec:
                duration_seconds(spec[prop], prop)
        slots = int(spec.get("taskSlotsPerNode", 1))
        if not 1 <= slots <= 256:
            raise invalid_value("taskSlotsPerNode", slots, "taskSlotsPerNode must be between 1 and 256.")
        autoscale = bool(spec.get("enableAutoScale", False))
        if autoscale and not spec.get("autoScaleFormula"):
            raise BatchServiceError(
                400,
                "InvalidAutoScalingSettings",
                "The specified auto-scaling settings are not valid.",
                {"Reason": "autoScaleFormula is required when enableAutoScale is true"},
            )
        if autoscale and ("targetDedicatedNodes" in spec or "targetLowPriorityNodes" in spec):
            raise BatchServiceError(
                400,
                "InvalidAutoScalingSettings",
                "The specified auto-scaling settings are not valid.",
                {
                    "Reason": "targetDedicatedNodes and targetLowPriorityNodes must not be set "
                    "with enableAutoScale"
                },
            )
        pool = Pool(id=pool_id, spec=copy.deepcopy(spec), auto_for_job=auto_for_job)
        self.resize(
            pool, int(spec.get("targetDedicatedNodes", 0)), int(spec.get("targetLowPriorityNodes", 0))
        )
        self.pools[pool_id.lower()] = pool
        LOG.info(
            "pool %s created (dedicated=%d, spot=%d)",
            pool_id,
            pool.target_dedicated,
            pool.target_low_priority,
        )
        return pool

    def _check_pool_references(self, spec: JSON) -> None:
        """The resource ids a pool names: a well-formed image id, a Marketplace image the
        account supports (``_images``), a subnet of this account's subscription
        (``InvalidPropertyValue`` otherwise, as the service answers)."""
        image = ((spec.get("virtualMachineConfiguration") or {}).get("imageReference")) or {}
        image_id = image.get("virtualMachineImageId")
        if image_id is not None and not _IMAGE_ID.match(str(image_id)):
            raise invalid_value("virtualMachineImageId", image_id, _IMAGE_ID_REASON)
        check_image(spec)
        subnet = (spec.get("networkConfiguration") or {}).get("subnetId")
        if subnet is not None:
            m = _SUBNET_SUBSCRIPTION.match(str(subnet))
            if m is None or m.group(1).lower() != SUBSCRIPTION_ID:
                raise invalid_value(
                    "subnetId",
                    subnet,
                    "The specified subnetId is in a different subscription and cannot be used with the "
                    f"current Batch account in subscription {SUBSCRIPTION_ID}",
                )

    def stop_resize(self, pool: Pool) -> None:
        """Stop Pool Resize: the pool is ``stopping``, then ``steady`` with the nodes it
        has, its targets unchanged and a ``ResizeStopped`` resize error (as the service
        answers)."""
        if pool.allocation_state != "resizing":
            return
        short = [
            kind
            for kind, dedicated, target in (
                ("dedicated", True, pool.target_dedicated),
                ("low priority", False, pool.target_low_priority),
            )
            if sum(1 for n in pool.nodes.values() if n.dedicated == dedicated) < target
        ]
        if short:
            pool.resize_errors = [
                {
                    "code": "ResizeStopped",
                    "message": f"Desired number of {' and '.join(short)} nodes could not be allocated due "
                    "to a stop resize operation",
                }
            ]
        pool.set_allocation("stopping")
        pool.resize_due = time.monotonic() + STOP_DELAY
        self.changed.notify_all()

    def resize(self, pool: Pool, dedicated: int, low: int) -> None:
        """Set the pool's targets; the scheduler finishes the resize after ``allocation_delay``."""
        pool.target_dedicated = dedicated
        pool.target_low_priority = low
        pool.resize_errors = []
        have_d = sum(1 for n in pool.nodes.values() if n.dedicated)
        have_l = sum(1 for n in pool.nodes.values() if not n.dedicated)
        if have_d == dedicated and have_l == low:
            pool.set_allocation("steady")
            return
        pool.set_allocation("resizing")
        pool.resize_due = time.monotonic() + self.allocation_delay
        self.changed.notify_all()

    def evaluate_formula(self, pool: Pool, formula: str) -> tuple[int, int]:
        """Evaluate Pool Autoscale: a formula of constant assignments only
        (``$TargetDedicatedNodes=3;``) gives its constants; any other, the approximation
        of :meth:`autoscale_target`."""
        if _LITERAL_FORMULA.match(formula):
            found = dict(re.findall(r"\$(TargetDedicatedNodes|TargetLowPriorityNodes)\s*=\s*(\d+)", formula))
            return int(found.get("TargetDedicatedNodes", 0)), int(found.get("TargetLowPriorityNodes", 0))
        return self.autoscale_target(pool, formula)

    def autoscale_target(self, pool: Pool, formula: str) -> tuple[int, int]:
        """``(dedicated, Spot)`` nodes for ``formula`` (the approximation in the module docstring)."""
        numbers = [int(x) for x in re.findall(r"(?<![\w.$])\d+(?![\w.])", formula)]
        cap = max(numbers) if numbers else 10
        pending = sum(
            j.tasks.count("active", "running", "preparing")
            for j in self.jobs.values()
            if j.pool_id.lower() == pool.id.lower() and j.state == "active"
        )
        target = min(pending, cap)
        if "$TargetLowPriorityNodes" in formula and "$TargetDedicatedNodes" not in formula:
            return 0, target
        return target, 0

    def begin_pool_delete(self, pool: Pool) -> None:
        """Mark the pool ``deleting``; the scheduler removes it once its nodes are quiet."""
        pool.state = "deleting"
        pool.state_time = now()
        pool.touch()
        pool.delete_due = time.monotonic() + DELETE_DELAY
        for node in list(pool.nodes.values()):
            self.evict_node(pool, node, "requeue")
        LOG.info("pool %s deleting", pool.id)
        self.changed.notify_all()

    def evict_node(self, pool: Pool, node: Node, reason: str) -> None:
        """Stop whatever runs on a node; its tasks go back to the queue."""
        if node.start_proc is not None:
            kill_process_group(node.start_proc)
        for key in list(node.running):
            job_id, task_id = key.split("/", 1)
            job = self.jobs.get(job_id.lower())
            task = job.tasks.get(task_id.lower()) if job else None
            if task is not None and task.proc is not None:
                task.kill_reason = reason
                kill_process_group(task.proc)

    # ------------------------------------------------------------------ jobs

    def terminate_job(self, job: Job, reason: str) -> None:
        """Mark the job ``terminating`` and end its running tasks; the scheduler completes it."""
        job.terminate_reason = reason
        job.set_state("terminating")
        for task in job.tasks.in_state("running", "preparing"):
            if task.proc is not None:
                task.kill_reason = "terminate"
                kill_process_group(task.proc)
        LOG.info("job %s terminating (%s)", job.id, reason)
        self.changed.notify_all()

    def disable_job(self, job: Job, option: str) -> None:
        """Mark the job ``disabled``; its running tasks are requeued or terminated
        (``disableTasks`` ``requeue``/``terminate``) or left to finish (``wait``)."""
        option = option.lower()
        for task in job.tasks.in_state("running", "preparing"):
            if task.proc is not None and option in ("requeue", "terminate"):
                task.kill_reason = option
                kill_process_group(task.proc)
        job.set_state("disabled")
        LOG.info("job %s disabled (%s)", job.id, option)
        self.changed.notify_all()

    def release_auto_pool(self, job: Job) -> None:
        """Delete the job's auto pool unless the job asked to keep it alive."""
        if not job.auto_pool:
            return
        auto = (job.spec.get("poolInfo") or {}).get("autoPoolSpecification") or {}
        if auto.get("keepAlive"):
            return
        pool = self.pools.get(job.pool_id.lower())
        if pool is not None and pool.state != "deleting":
            self.begin_pool_delete(pool)
