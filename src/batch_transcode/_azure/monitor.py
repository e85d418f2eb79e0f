"""Watching a job: task counts for progress, fail fast on a broken pool, finished tasks
read incrementally.

Each poll reads the job's task counts (:func:`job_counts`). When they stall (and
on the first poll) the pool's allocation state and its nodes are checked too
(:func:`check_pool`), so that a start task that failed, an allocation or resize
error, or nodes that all became unusable raise :class:`ProvisioningError` at
once instead of waiting for the timeout.

Counts "may not always be up to date" (Batch REST API, Get Task Counts), so they
drive only the progress bar; which tasks finished is read with
:func:`list_finished`: ``state eq 'completed'``, and after the first listing only
tasks whose ``stateTransitionTime`` is at or after the newest one seen minus a
margin (the REST docs' "OData filters in Batch" list both for List Tasks), with
``$select``. A task's state and result are the SDK's enums
(``BatchTaskState``, ``BatchTaskExecutionResult``).
"""

from __future__ import annotations

import datetime as dt
import logging
import sys

import attrs
from azure.batch import BatchClient
from azure.batch import models as bm
from azure.core import exceptions as az

from batch_transcode._azure._calls import call
from batch_transcode._azure.preflight import resize_error_advice
from batch_transcode._config import AzureConfig
from batch_transcode._errors import ProvisioningError
from batch_transcode._ffmpeg import stderr_tail
from batch_transcode._usage import NodeSpan

__all__ = [
    "Counts",
    "TaskOutcome",
    "auto_pool_id",
    "check_pool",
    "job_counts",
    "list_finished",
    "log_counts",
    "pool_capacity",
    "start_task_stderr",
]

log = logging.getLogger(__name__)

#: Node states in which a node will never run a task without someone stepping in.
BROKEN_NODE_STATES = frozenset({"unusable", "starttaskfailed"})


@attrs.define(frozen=True)
class Counts:
    active: int
    running: int
    completed: int
    succeeded: int
    failed: int


@attrs.define(frozen=True, kw_only=True)
class TaskOutcome:
    """What the final listing says about one task."""

    task_id: str
    state: bm.BatchTaskState
    result: bm.BatchTaskExecutionResult | None = None
    exit_code: int | None = None
    failure_code: str | None = None
    failure_message: str | None = None
    seconds: float | None = None
    #: When the task entered its state, as the service stamps it.
    changed_at: dt.datetime | None = None
    #: Its last attempt's start and end (``executionInfo``), the node that ran it
    #: (``nodeInfo``), and how often the service retried and requeued it.
    started: dt.datetime | None = None
    ended: dt.datetime | None = None
    node: str | None = None
    retries: int = 0
    requeues: int = 0

    @property
    def succeeded(self) -> bool:
        return (
            self.state is bm.BatchTaskState.COMPLETED
            and self.result is bm.BatchTaskExecutionResult.SUCCESS
            and self.exit_code in (0, None)
        )


def start_task_stderr(client: BatchClient, pool_id: str, node_id: str) -> str | None:
    """The tail of a node's start task stderr (``startup/stderr.txt``), if it can be read."""
    try:
        data = b"".join(client.download_node_file(pool_id, node_id, "startup/stderr.txt"))
    except az.AzureError as exc:
        log.debug("could not read the start task stderr of node %s: %s", node_id, exc)
        return None
    return stderr_tail(data.decode("utf-8", "replace")) or None


def check_pool(client: BatchClient, pool_id: str, config: AzureConfig) -> None:
    """Raise :class:`ProvisioningError` if the pool cannot run tasks and will not recover."""
    policy = config.retry
    pool = call(
        policy,
        f"get pool {pool_id}",
        lambda: client.get_pool(
            pool_id,
            select=[
                "id",
                "state",
                "allocationState",
                "resizeErrors",
                "currentDedicatedNodes",
                "currentLowPriorityNodes",
                "enableAutoScale",
            ],
        ),
        pool_id=pool_id,
    )
    current = (pool.current_dedicated_nodes or 0) + (pool.current_low_priority_nodes or 0)
    errors = pool.resize_errors or []
    if errors and current == 0 and pool.allocation_state == "steady":
        first = errors[0]
        raise ProvisioningError(
            f"pool {pool_id} could not allocate nodes: {first.code}: {first.message}. "
            f"{resize_error_advice(first.code)}",
            pool_id=pool_id,
            code=first.code,
        )
    if current == 0:
        return
    nodes = list(
        call(
            policy,
            f"list nodes of pool {pool_id}",
            lambda: list(client.list_nodes(pool_id, select=["id", "state", "startTaskInfo"])),
            pool_id=pool_id,
        )
    )
    for node in nodes:
        if node.state == "starttaskfailed":
            info = node.start_task_info
            exit_code = info.exit_code if info is not None else None
            failure = info.failure_info if info is not None else None
            why = f"exit code {exit_code}" if exit_code is not None else (failure.message if failure else "")
            raise ProvisioningError(
                f"the start task failed on node {node.id} of pool {pool_id} ({why}); "
                "ffmpeg could not be installed on the nodes",
                pool_id=pool_id,
                code=failure.code if failure is not None else "StartTaskFailed",
                stderr_tail=start_task_stderr(client, pool_id, node.id or ""),
            )
    if nodes and all(n.state in BROKEN_NODE_STATES for n in nodes):
        raise ProvisioningError(
            f"all {len(nodes)} node(s) of pool {pool_id} are unusable", pool_id=pool_id, code="NodesUnusable"
        )


def pool_capacity(client: BatchClient, pool_id: str, config: AzureConfig) -> tuple[int, list[NodeSpan]]:
    """The pool's task slots per node and its nodes, each from its ``allocationTime``
    ("the time at which this Compute Node was allocated to the Pool", Batch REST API,
    Get Node): what a run held, read once when it ends."""
    policy = config.retry
    pool = call(
        policy,
        f"get pool {pool_id}",
        lambda: client.get_pool(pool_id, select=["id", "taskSlotsPerNode"]),
        pool_id=pool_id,
    )
    nodes = call(
        policy,
        f"list nodes of pool {pool_id}",
        lambda: list(client.list_nodes(pool_id, select=["id", "allocationTime"])),
        pool_id=pool_id,
    )
    spans = [NodeSpan(node_id=n.id or "", allocated=n.allocation_time) for n in nodes if n.allocation_time]
    return pool.task_slots_per_node or config.task_slots_per_node, spans


def job_counts(client: BatchClient, job_id: str, config: AzureConfig) -> Counts:
    result = call(
        config.retry,
        f"get task counts of job {job_id}",
        lambda: client.get_job_task_counts(job_id),
        job_id=job_id,
    )
    c = result.task_counts
    return Counts(c.active, c.running, c.completed, c.succeeded, c.failed)


def auto_pool_id(client: BatchClient, job_id: str, config: AzureConfig) -> str | None:
    job = call(
        config.retry,
        f"get job {job_id}",
        lambda: client.get_job(job_id, select=["id", "executionInfo"]),
        job_id=job_id,
    )
    info = job.execution_info
    return info.pool_id if info is not None else None


def log_counts(job_id: str, counts: Counts, total: int) -> None:
    log.info(
        "job %s: %d/%d done (%d failed), %d running, %d waiting",
        job_id,
        counts.completed,
        total,
        counts.failed,
        counts.running,
        counts.active,
    )


#: What a listing of finished tasks asks for.
TASK_SELECT = ["id", "state", "stateTransitionTime", "executionInfo", "nodeInfo"]


def _outcome(task: bm.BatchTask) -> TaskOutcome:
    """``task`` as a :class:`TaskOutcome`. Each field is read once: a model's field is
    parsed from the response's JSON on every read (``_RestField.__get__`` in azure-batch's
    ``_utils/model_base.py``), and a listing brings thousands of tasks."""
    info = task.execution_info
    failure = started = ended = result = exit_code = None
    retries = requeues = 0
    if info is not None:
        failure, started, ended = info.failure_info, info.start_time, info.end_time
        result, exit_code = info.result, info.exit_code
        retries, requeues = info.retry_count or 0, info.requeue_count or 0
    return TaskOutcome(
        task_id=task.id or "",
        state=bm.BatchTaskState(task.state),
        result=bm.BatchTaskExecutionResult(result) if result else None,
        exit_code=exit_code,
        failure_code=failure.code if failure is not None else None,
        failure_message=failure.message if failure is not None else None,
        seconds=(ended - started).total_seconds() if started is not None and ended is not None else None,
        changed_at=task.state_transition_time,
        started=started,
        ended=ended,
        node=_node_id(task),
        retries=retries,
        requeues=requeues,
    )


def _node_id(task: bm.BatchTask) -> str | None:
    """The id of the node ``task`` ran on: one string per node, not one per task (a
    report keeps 100,000 of them)."""
    node = task.node_info.node_id if task.node_info is not None else None
    return sys.intern(node) if node is not None else None


def odata_time(value: dt.datetime) -> str:
    """A ``DateTime'...'`` literal for a Batch ``$filter`` (UTC, seconds precision is not
    enough: tasks finish many to a second)."""
    utc = value.astimezone(dt.UTC)
    return "DateTime'" + utc.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z'"


def list_finished(
    client: BatchClient, job_id: str, config: AzureConfig, since: dt.datetime | None
) -> list[TaskOutcome]:
    """The job's completed tasks; with ``since``, only those whose state changed at or
    after it."""
    query = "state eq 'completed'"
    if since is not None:
        query += f" and stateTransitionTime ge {odata_time(since)}"

    def listing() -> list[bm.BatchTask]:
        return list(client.list_tasks(job_id, filter=query, select=TASK_SELECT))

    tasks = call(config.retry, f"list finished tasks of job {job_id}", listing, job_id=job_id)
    return [_outcome(task) for task in tasks]
