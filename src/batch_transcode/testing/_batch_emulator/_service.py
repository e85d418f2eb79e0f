"""The emulated Batch account: its REST operations, on the state of ``_state``.

Every REST operation is a method ``op_<operationId>`` taking a :class:`Call` and
returning a :class:`Reply`. The scheduler (``_scheduler``) moves pools, nodes, jobs and
tasks through their states; the runner (``_runner``) runs start tasks and tasks as real
processes. Node allocation takes ``allocation_delay`` seconds; node ids, IP addresses and
agent versions are made up.
"""

from __future__ import annotations

import copy
import logging
import re
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from batch_transcode._process import kill_process_group

from ._errors import BatchServiceError, being_deleted, exists, invalid_value, not_found
from ._faults import Faults
from ._model import (
    JSON,
    Job,
    JobSnapshot,
    Pool,
    PoolSnapshot,
    Task,
    TaskSnapshot,
    iso,
    metadata_dict,
    now,
)
from ._odata import apply_select, duration_seconds, parse_filter
from ._scheduler import Scheduler
from ._state import DELETE_DELAY, AccountState

LOG = logging.getLogger(__name__)

MAX_RESULTS = 1000
MAX_TASKS_PER_COLLECTION = 100
MAX_BODY_BYTES = 1024 * 1024
_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@dataclass
class Call:
    operation: str
    params: dict[str, str]
    query: dict[str, str]
    body: Any
    headers: dict[str, str]


@dataclass
class Reply:
    status: int
    body: JSON | bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)


def _check_id(value: Any, prop: str = "id") -> str:
    if not isinstance(value, str) or not _ID.match(value):
        raise invalid_value(
            prop,
            value,
            "The id can contain only letters, digits, hyphens and underscores, up to 64 characters.",
        )
    return value


class Service(AccountState):
    """One emulated Batch account: its state, operations, scheduler and task execution."""

    def __init__(
        self,
        *,
        account: str,
        workdir: Path,
        faults: Faults,
        allocation_delay: float,
    ) -> None:
        super().__init__(account=account, workdir=workdir, faults=faults, allocation_delay=allocation_delay)
        self._scheduler = Scheduler(self)

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        (self.workdir / "nodes").mkdir(parents=True, exist_ok=True)
        self._scheduler.start()

    def stop(self) -> None:
        self.stopping.set()
        with self.lock:
            self.changed.notify_all()
            procs = []
            for pool in self.pools.values():
                for node in pool.nodes.values():
                    if node.start_proc is not None:
                        procs.append(node.start_proc)
            for job in self.jobs.values():
                for task in job.tasks.values():
                    if task.proc is not None:
                        task.kill_reason = task.kill_reason or "shutdown"
                        procs.append(task.proc)
        for proc in procs:
            kill_process_group(proc)
        self._scheduler.join(timeout=10)
        self.join_workers(timeout=10)

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no task is running or waiting to run on a usable pool."""
        deadline = time.monotonic() + timeout
        with self.lock:
            while True:
                busy = any(
                    t.state in ("running", "preparing")
                    or (t.state == "active" and self._runnable_pool(j) is not None)
                    for j in self.jobs.values()
                    if j.state in ("active", "terminating")
                    for t in j.tasks.values()
                )
                if not busy:
                    return True
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.changed.wait(min(left, 0.1))

    def _runnable_pool(self, job: Job) -> Pool | None:
        pool = self.pools.get(job.pool_id.lower())
        if pool is None or pool.state != "active":
            return None
        if not pool.nodes and pool.allocation_state == "steady":
            return None
        if pool.nodes and all(n.state in ("starttaskfailed", "unusable") for n in pool.nodes.values()):
            return None
        return pool

    # ------------------------------------------------------------------ snapshots

    def snapshot_pools(self) -> list[PoolSnapshot]:
        with self.lock:
            return [
                PoolSnapshot(
                    id=p.id,
                    state=p.state,
                    allocation_state=p.allocation_state,
                    metadata=metadata_dict(p.spec),
                    node_states={n.id: n.state for n in p.nodes.values()},
                    resize_errors=copy.deepcopy(p.resize_errors),
                    auto_for_job=p.auto_for_job,
                )
                for p in self.pools.values()
            ]

    def snapshot_jobs(self) -> list[JobSnapshot]:
        with self.lock:
            return [
                JobSnapshot(
                    id=j.id,
                    state=j.state,
                    pool_id=j.pool_id,
                    metadata=metadata_dict(j.spec),
                    terminate_reason=j.terminate_reason,
                )
                for j in self.jobs.values()
            ]

    def snapshot_tasks(self, job_id: str) -> list[TaskSnapshot]:
        with self.lock:
            job = self.jobs.get(job_id.lower())
            if job is None:
                return []
            return [
                TaskSnapshot(
                    id=t.id,
                    job_id=job.id,
                    state=t.state,
                    exit_code=t.execution.get("exitCode"),
                    result=t.execution.get("result"),
                    retry_count=int(t.execution.get("retryCount", 0)),
                    requeue_count=int(t.execution.get("requeueCount", 0)),
                    node_id=(t.node_info or {}).get("nodeId"),
                )
                for t in job.tasks.values()
            ]

    # ------------------------------------------------------------------ helpers

    def _entity_headers(self, res: Pool | Job | Task, url: str | None = None) -> dict[str, str]:
        from ._model import rfc1123

        headers = {"ETag": res.etag, "Last-Modified": rfc1123(res.last_modified)}
        if url:
            headers["DataServiceId"] = url
        return headers

    def _paging(self, call: Call) -> tuple[int, int]:
        """``(skip, page size)`` from ``$skiptoken`` and ``maxresults``."""
        raw_max = call.query.get("maxresults")
        page = MAX_RESULTS
        if raw_max is not None:
            try:
                page = int(raw_max)
            except ValueError as exc:
                raise BatchServiceError(
                    400,
                    "InvalidQueryParameterValue",
                    "Value for one of the query parameters specified in the request URI is invalid.",
                    {"QueryParameterName": "maxresults", "QueryParameterValue": raw_max},
                ) from exc
            if not 1 <= page <= MAX_RESULTS:
                raise BatchServiceError(
                    400,
                    "OutOfRangeQueryParameterValue",
                    "A query parameter specified in the request URI is outside the permissible range.",
                    {"QueryParameterName": "maxresults", "QueryParameterValue": raw_max},
                )
        skip = 0
        token = call.query.get("$skiptoken")
        if token:
            try:
                skip = int(token)
            except ValueError as exc:
                raise BatchServiceError(
                    400,
                    "InvalidQueryParameterValue",
                    "Value for one of the query parameters specified in the request URI is invalid.",
                    {"QueryParameterName": "$skiptoken", "QueryParameterValue": token},
                ) from exc
        return skip, page

    def _page_reply(
        self, call: Call, chunk: list[JSON], more: bool, skip: int, page: int, kind: str, path: str
    ) -> Reply:
        body: JSON = {
            "odata.metadata": f"{self.endpoint}/$metadata#{kind}",
            "value": [apply_select(doc, call.query.get("$select")) for doc in chunk],
        }
        if more:
            q = {"api-version": call.query.get("api-version", "")}
            for name in ("$filter", "$select", "$expand", "maxresults"):
                if call.query.get(name):
                    q[name] = call.query[name]
            q["$skiptoken"] = str(skip + page)
            body["odata.nextLink"] = f"{self.endpoint}{path}?{urlencode(q, quote_via=quote, safe='')}"
        return Reply(200, body)

    def _list(self, call: Call, items: list[JSON], kind: str, path: str) -> Reply:
        predicate = parse_filter(call.query.get("$filter"))
        skip, page = self._paging(call)
        # The service lists by id (case-insensitively), which keeps paging stable.
        matched = sorted(
            (doc for doc in items if predicate(doc)),
            key=lambda d: str(d.get("id", d.get("name", ""))).lower(),
        )
        chunk = matched[skip : skip + page]
        return self._page_reply(call, chunk, skip + page < len(matched), skip, page, kind, path)

    def _list_lazily(
        self, call: Call, items: Mapping[str, Callable[[], JSON]], kind: str, path: str
    ) -> Reply:
        """``_list`` for many items keyed by lower-case id: without ``$filter`` only the
        requested page is rendered (a page costs O(page), not O(all items))."""
        if call.query.get("$filter"):
            return self._list(call, [render() for render in items.values()], kind, path)
        skip, page = self._paging(call)
        keys = sorted(items)[skip : skip + page]
        return self._page_reply(
            call, [items[k]() for k in keys], skip + page < len(items), skip, page, kind, path
        )

    # ------------------------------------------------------------------ pools

    def op_Pools_CreatePool(self, call: Call) -> Reply:
        spec = call.body
        pool_id = _check_id(spec["id"])
        with self.lock:
            if pool_id.lower() in self.pools:
                raise exists("Pool")
            pool = self.new_pool(pool_id, spec)
            url = f"{self.endpoint}/pools/{pool.id}"
            return Reply(201, None, {**self._entity_headers(pool, url), "Location": url})

    def op_Pools_GetPool(self, call: Call) -> Reply:
        with self.lock:
            pool = self.pool(call.params["poolId"])
            doc = pool.to_json(self.endpoint)
            doc = apply_select(doc, call.query.get("$select"))
            doc["odata.metadata"] = f"{self.endpoint}/$metadata#pools/@Element"
            return Reply(200, doc, self._entity_headers(pool))

    def op_Pools_PoolExists(self, call: Call) -> Reply:
        with self.lock:
            pool = self.pools.get(call.params["poolId"].lower())
            if pool is None:
                return Reply(404, None)
            return Reply(200, None, self._entity_headers(pool))

    def op_Pools_ListPools(self, call: Call) -> Reply:
        with self.lock:
            docs = [p.to_json(self.endpoint) for p in self.pools.values()]
        return self._list(call, docs, "pools", "/pools")

    def op_Pools_DeletePool(self, call: Call) -> Reply:
        with self.lock:
            pool = self.pool(call.params["poolId"])
            if pool.state == "deleting":
                raise being_deleted("Pool")
            self.begin_pool_delete(pool)
            return Reply(202, None)

    def op_Pools_ResizePool(self, call: Call) -> Reply:
        body = call.body or {}
        with self.lock:
            pool = self.writable_pool(call.params["poolId"])
            if pool.spec.get("enableAutoScale"):
                raise BatchServiceError(
                    409,
                    "OperationNotValidOnPool",
                    "The specified operation is not valid on the pool.",
                    {"Reason": "The pool has auto scaling enabled"},
                )
            if pool.allocation_state != "steady":
                raise BatchServiceError(409, "PoolBeingResized", "The specified pool is being resized")
            if "resizeTimeout" in body:
                duration_seconds(body["resizeTimeout"], "resizeTimeout")
            self.resize(
                pool,
                int(body.get("targetDedicatedNodes", pool.target_dedicated)),
                int(body.get("targetLowPriorityNodes", pool.target_low_priority)),
            )
            url = f"{self.endpoint}/pools/{pool.id}"
            return Reply(202, None, self._entity_headers(pool, url))

    def op_Pools_StopPoolResize(self, call: Call) -> Reply:
        with self.lock:
            pool = self.writable_pool(call.params["poolId"])
            if pool.allocation_state == "resizing":
                pool.target_dedicated = sum(1 for n in pool.nodes.values() if n.dedicated)
                pool.target_low_priority = sum(1 for n in pool.nodes.values() if not n.dedicated)
                pool.set_allocation("steady")
            return Reply(202, None, self._entity_headers(pool, f"{self.endpoint}/pools/{pool.id}"))

    def op_Pools_UpdatePool(self, call: Call) -> Reply:
        body = call.body or {}
        with self.lock:
            pool = self.writable_pool(call.params["poolId"])
            for key, value in body.items():
                pool.spec[key] = copy.deepcopy(value)
            pool.touch()
            return Reply(200, None, self._entity_headers(pool, f"{self.endpoint}/pools/{pool.id}"))

    def op_Pools_ReplacePoolProperties(self, call: Call) -> Reply:
        body = call.body or {}
        with self.lock:
            pool = self.writable_pool(call.params["poolId"])
            for key in (
                "startTask",
                "metadata",
                "applicationPackageReferences",
                "targetNodeCommunicationMode",
            ):
                if key in body:
                    pool.spec[key] = copy.deepcopy(body[key])
                else:
                    pool.spec.pop(key, None)
            pool.touch()
            return Reply(204, None, self._entity_headers(pool, f"{self.endpoint}/pools/{pool.id}"))

    def op_Pools_EnablePoolAutoScale(self, call: Call) -> Reply:
        body = call.body or {}
        with self.lock:
            pool = self.writable_pool(call.params["poolId"])
            formula = body.get("autoScaleFormula") or pool.spec.get("autoScaleFormula")
            if not formula:
                raise BatchServiceError(
                    400, "InvalidAutoScalingSettings", "The specified auto-scaling settings are not valid."
                )
            pool.spec["enableAutoScale"] = True
            pool.spec["autoScaleFormula"] = formula
            if "autoScaleEvaluationInterval" in body:
                pool.spec["autoScaleEvaluationInterval"] = body["autoScaleEvaluationInterval"]
            pool.spec.pop("targetDedicatedNodes", None)
            pool.spec.pop("targetLowPriorityNodes", None)
            pool.touch()
            self.changed.notify_all()
            return Reply(200, None, self._entity_headers(pool, f"{self.endpoint}/pools/{pool.id}"))

    def op_Pools_DisablePoolAutoScale(self, call: Call) -> Reply:
        with self.lock:
            pool = self.writable_pool(call.params["poolId"])
            pool.spec["enableAutoScale"] = False
            pool.touch()
            return Reply(200, None, self._entity_headers(pool, f"{self.endpoint}/pools/{pool.id}"))

    def op_Pools_EvaluatePoolAutoScale(self, call: Call) -> Reply:
        body = call.body or {}
        with self.lock:
            pool = self.writable_pool(call.params["poolId"])
            dedicated, low = self.autoscale_target(pool, body.get("autoScaleFormula", ""))
            run = {
                "timestamp": iso(now()),
                "results": f"$TargetDedicatedNodes={dedicated};$TargetLowPriorityNodes={low};"
                "$NodeDeallocationOption=requeue",
            }
            return Reply(200, run, self._entity_headers(pool, f"{self.endpoint}/pools/{pool.id}"))

    def op_Pools_ListSupportedImages(self, call: Call) -> Reply:
        images = [
            {
                "nodeAgentSKUId": "batch.node.ubuntu 24.04",
                "imageReference": {
                    "publisher": "canonical",
                    "offer": "ubuntu-24_04-lts",
                    "sku": sku,
                    "version": "latest",
                },
                "osType": "linux",
                "verificationType": "verified",
                "capabilities": [],
            }
            for sku in ("server", "server-gen1")
        ]
        return self._list(call, images, "supportedimages", "/supportedimages")

    def op_Pools_ListPoolNodeCounts(self, call: Call) -> Reply:
        states = [
            "creating", "idle", "offline", "preempted", "rebooting", "reimaging", "running", "starting",
            "startTaskFailed", "leavingPool", "unknown", "unusable", "waitingForStartTask", "deallocated",
            "deallocating", "upgradingOS",
        ]  # fmt: skip
        with self.lock:
            docs = []
            for pool in self.pools.values():
                counts: dict[str, JSON] = {}
                for kind, dedicated in (("dedicated", True), ("lowPriority", False)):
                    c: JSON = dict.fromkeys(states, 0)
                    for n in pool.nodes.values():
                        if n.dedicated == dedicated:
                            key = next((s for s in states if s.lower() == n.state.lower()), "unknown")
                            c[key] += 1
                    c["total"] = sum(v for v in c.values())
                    counts[kind] = c
                docs.append({"poolId": pool.id, **counts})
        return self._list(call, docs, "poolnodecounts", "/nodecounts")

    # ------------------------------------------------------------------ nodes

    def op_Nodes_ListNodes(self, call: Call) -> Reply:
        with self.lock:
            pool = self.pool(call.params["poolId"])
            docs = [n.to_json(self.endpoint, pool) for n in pool.nodes.values()]
        return self._list(call, docs, "nodes", f"/pools/{pool.id}/nodes")

    def op_Nodes_GetNode(self, call: Call) -> Reply:
        with self.lock:
            pool = self.pool(call.params["poolId"])
            node = self.node(pool, call.params["nodeId"])
            doc = apply_select(node.to_json(self.endpoint, pool), call.query.get("$select"))
            doc["odata.metadata"] = f"{self.endpoint}/$metadata#nodes/@Element"
            return Reply(200, doc)

    def _file_reply(self, base: Path, rel: str, url: str, head: bool, headers: dict[str, str]) -> Reply:
        from ._model import rfc1123

        target = (base / rel).resolve()
        if base.resolve() not in (target, *target.parents) or not target.is_file():
            raise not_found("File", rel)
        st = target.stat()
        from datetime import UTC, datetime

        mtime = datetime.fromtimestamp(st.st_mtime, UTC)
        data = b"" if head else target.read_bytes()
        out_headers = {
            "Content-Type": "application/octet-stream",
            "ocp-creation-time": rfc1123(mtime),
            "ocp-batch-file-isdirectory": "False",
            "ocp-batch-file-url": url,
            "ocp-batch-file-mode": f"0o{st.st_mode:o}",
            "Last-Modified": rfc1123(mtime),
            "ETag": f'"0x{int(st.st_mtime_ns):X}"',
        }
        rng = headers.get("ocp-range") or headers.get("range")
        if rng and not head:
            m = re.match(r"bytes=(\d*)-(\d*)", rng)
            if m:
                start = int(m.group(1) or 0)
                end = int(m.group(2)) if m.group(2) else len(data) - 1
                data = data[start : end + 1]
        if head:
            out_headers["Content-Length"] = str(st.st_size)
        return Reply(200, data, out_headers)

    def _list_files(self, call: Call, base: Path, url_prefix: str, kind: str, path: str) -> Reply:
        from datetime import UTC, datetime

        recursive = (call.query.get("recursive") or "false").lower() == "true"
        docs: list[JSON] = []
        if base.is_dir():
            walker: Iterator[Path] = base.rglob("*") if recursive else base.iterdir()
            for p in sorted(walker):
                rel = p.relative_to(base).as_posix()
                st = p.stat()
                doc: JSON = {"name": rel, "url": f"{url_prefix}/{quote(rel)}", "isDirectory": p.is_dir()}
                if p.is_file():
                    t = iso(datetime.fromtimestamp(st.st_mtime, UTC))
                    doc["properties"] = {
                        "creationTime": t,
                        "lastModified": t,
                        "contentLength": st.st_size,
                        "contentType": "application/octet-stream",
                        "fileMode": f"0o{st.st_mode:o}",
                    }
                docs.append(doc)
        return self._list(call, docs, kind, path)

    def op_Nodes_GetNodeFile(self, call: Call, head: bool = False) -> Reply:
        with self.lock:
            pool = self.pool(call.params["poolId"])
            node = self.node(pool, call.params["nodeId"])
            rel = call.params["filePath"]
            url = f"{self.endpoint}/pools/{pool.id}/nodes/{node.id}/files/{quote(rel)}"
            return self._file_reply(node.root, rel, url, head, call.headers)

    def op_Nodes_GetNodeFileProperties(self, call: Call) -> Reply:
        return self.op_Nodes_GetNodeFile(call, head=True)

    def op_Nodes_ListNodeFiles(self, call: Call) -> Reply:
        with self.lock:
            pool = self.pool(call.params["poolId"])
            node = self.node(pool, call.params["nodeId"])
            prefix = f"{self.endpoint}/pools/{pool.id}/nodes/{node.id}/files"
            return self._list_files(
                call, node.root, prefix, "files", f"/pools/{pool.id}/nodes/{node.id}/files"
            )

    # ------------------------------------------------------------------ jobs

    def op_Jobs_CreateJob(self, call: Call) -> Reply:
        spec = call.body
        job_id = _check_id(spec["id"])
        with self.lock:
            if job_id.lower() in self.jobs:
                raise exists("Job")
            pool_info = spec.get("poolInfo") or {}
            constraints = spec.get("constraints") or {}
            deadline = None
            if "maxWallClockTime" in constraints:
                deadline = time.monotonic() + duration_seconds(
                    constraints["maxWallClockTime"], "constraints.maxWallClockTime"
                )
            if bool(pool_info.get("poolId")) == bool(pool_info.get("autoPoolSpecification")):
                raise invalid_value(
                    "poolInfo", "", "Exactly one of poolId and autoPoolSpecification must be specified."
                )
            job = Job(id=job_id, spec=copy.deepcopy(spec), deadline=deadline)
            auto = pool_info.get("autoPoolSpecification")
            if auto:
                prefix = auto.get("autoPoolIdPrefix")
                pool_id = f"{prefix}_{uuid.uuid4()}" if prefix else str(uuid.uuid4()).upper()
                self.new_pool(pool_id, auto.get("pool") or {}, auto_for_job=job_id)
                job.pool_id = pool_id
                job.auto_pool = True
            else:
                job.pool_id = pool_info["poolId"]
            self.jobs[job_id.lower()] = job
            LOG.info("job %s created on pool %s", job_id, job.pool_id)
            self.changed.notify_all()
            url = f"{self.endpoint}/jobs/{job.id}"
            return Reply(201, None, {**self._entity_headers(job, url), "Location": url})

    def op_Jobs_GetJob(self, call: Call) -> Reply:
        with self.lock:
            job = self.job(call.params["jobId"])
            doc = apply_select(job.to_json(self.endpoint), call.query.get("$select"))
            doc["odata.metadata"] = f"{self.endpoint}/$metadata#jobs/@Element"
            return Reply(200, doc, self._entity_headers(job))

    def op_Jobs_ListJobs(self, call: Call) -> Reply:
        with self.lock:
            docs = [j.to_json(self.endpoint) for j in self.jobs.values()]
        return self._list(call, docs, "jobs", "/jobs")

    def op_Jobs_DeleteJob(self, call: Call) -> Reply:
        with self.lock:
            job = self.writable_job(call.params["jobId"])
            job.set_state("deleting")
            job.delete_due = time.monotonic() + DELETE_DELAY
            for task in job.tasks.values():
                if task.proc is not None:
                    task.kill_reason = "delete"
                    kill_process_group(task.proc)
            self.release_auto_pool(job)
            LOG.info("job %s deleting", job.id)
            self.changed.notify_all()
            return Reply(202, None)

    def op_Jobs_TerminateJob(self, call: Call) -> Reply:
        body = call.body or {}
        with self.lock:
            job = self.writable_job(call.params["jobId"])
            if job.state == "completed":
                raise BatchServiceError(
                    409, "JobCompleted", "The specified job is already in a completed state."
                )
            if job.state == "terminating":
                raise BatchServiceError(409, "JobBeingTerminated", "The specified job is being terminated.")
            self.terminate_job(job, body.get("terminateReason") or "UserTerminate")
            return Reply(202, None, self._entity_headers(job, f"{self.endpoint}/jobs/{job.id}"))

    def op_Jobs_UpdateJob(self, call: Call) -> Reply:
        body = call.body or {}
        with self.lock:
            job = self.writable_job(call.params["jobId"])
            for key, value in body.items():
                if key == "poolInfo":
                    continue
                job.spec[key] = copy.deepcopy(value)
            if "constraints" in body and "maxWallClockTime" in body["constraints"]:
                seconds = duration_seconds(
                    body["constraints"]["maxWallClockTime"], "constraints.maxWallClockTime"
                )
                job.deadline = job.creation_time.timestamp() - time.time() + time.monotonic() + seconds
            job.touch()
            self.changed.notify_all()
            return Reply(200, None, self._entity_headers(job, f"{self.endpoint}/jobs/{job.id}"))

    def op_Jobs_DisableJob(self, call: Call) -> Reply:
        with self.lock:
            job = self.writable_job(call.params["jobId"])
            if job.state != "active":
                raise BatchServiceError(409, "JobNotActive", "The specified job is not in active state.")
            option = (call.body or {}).get("disableTasks", "requeue")
            for task in job.tasks.values():
                if task.proc is not None and option in ("requeue", "terminate"):
                    task.kill_reason = "requeue" if option == "requeue" else "terminate"
                    kill_process_group(task.proc)
            job.set_state("disabled")
            return Reply(202, None, self._entity_headers(job, f"{self.endpoint}/jobs/{job.id}"))

    def op_Jobs_EnableJob(self, call: Call) -> Reply:
        with self.lock:
            job = self.writable_job(call.params["jobId"])
            if job.state == "disabled":
                job.set_state("active")
                self.changed.notify_all()
            return Reply(202, None, self._entity_headers(job, f"{self.endpoint}/jobs/{job.id}"))

    def op_Jobs_GetJobTaskCounts(self, call: Call) -> Reply:
        with self.lock:
            job = self.job(call.params["jobId"])
            counts = {"active": 0, "running": 0, "completed": 0, "succeeded": 0, "failed": 0}
            slots = dict(counts)
            for t in job.tasks.values():
                state = "running" if t.state in ("running", "preparing") else t.state
                counts[state] += 1
                slots[state] += t.required_slots
                if t.state == "completed":
                    outcome = "succeeded" if t.execution.get("result") == "success" else "failed"
                    counts[outcome] += 1
                    slots[outcome] += t.required_slots
            return Reply(200, {"taskCounts": counts, "taskSlotCounts": slots})

    # ------------------------------------------------------------------ tasks

    def _add_task(self, job: Job, spec: JSON) -> Task:
        task_id = _check_id(spec.get("id"))
        if task_id.lower() in job.tasks:
            raise exists("Task")
        constraints = spec.get("constraints") or {}
        for prop in ("maxWallClockTime", "retentionTime"):
            if prop in constraints:
                duration_seconds(constraints[prop], f"constraints.{prop}")
        pool = self.pools.get(job.pool_id.lower())
        slots = int(spec.get("requiredSlots", 1))
        if slots < 1 or (pool is not None and slots > pool.slots_per_node):
            raise invalid_value(
                "requiredSlots",
                slots,
                "requiredSlots must be at least 1 and at most the pool's taskSlotsPerNode.",
            )
        if spec.get("dependsOn") and not job.spec.get("usesTaskDependencies"):
            raise BatchServiceError(
                400,
                "TaskDependenciesNotSpecifiedOnJob",
                "A task was specified as depending on other tasks, but the job did not specify that it "
                "would use "
                "task dependencies.",
            )
        task = Task(id=task_id, job_id=job.id, spec=copy.deepcopy(spec))
        job.tasks[task_id.lower()] = task
        return task

    def _job_for_add(self, job_id: str) -> Job:
        job = self.writable_job(job_id)
        if job.state == "completed":
            raise BatchServiceError(409, "JobCompleted", "The specified job is already in a completed state.")
        if job.state == "terminating":
            raise BatchServiceError(409, "JobBeingTerminated", "The specified job is being terminated.")
        return job

    def op_Tasks_CreateTask(self, call: Call) -> Reply:
        with self.lock:
            job = self._job_for_add(call.params["jobId"])
            task = self._add_task(job, call.body)
            self.changed.notify_all()
            url = f"{self.endpoint}/jobs/{job.id}/tasks/{task.id}"
            return Reply(201, None, {**self._entity_headers(task, url), "Location": url})

    def op_Tasks_CreateTaskCollection(self, call: Call) -> Reply:
        values = call.body.get("value") or []
        if len(values) > MAX_TASKS_PER_COLLECTION:
            raise BatchServiceError(
                413,
                "RequestBodyTooLarge",
                "The request body is too large and exceeds the maximum permissible limit.",
                {
                    "MaxLimit": str(MAX_TASKS_PER_COLLECTION),
                    "Reason": "A task collection holds at most 100 tasks.",
                },
            )
        results: list[JSON] = []
        with self.lock:
            job = self._job_for_add(call.params["jobId"])
            for spec in values:
                tid = spec.get("id", "")
                try:
                    task = self._add_task(job, spec)
                except BatchServiceError as exc:
                    results.append(
                        {
                            "status": "servererror" if exc.status >= 500 else "clienterror",
                            "taskId": tid,
                            "error": {
                                "code": exc.code,
                                "message": {"lang": "en-US", "value": exc.message},
                                **(
                                    {"values": [{"key": k, "value": v} for k, v in exc.values.items()]}
                                    if exc.values
                                    else {}
                                ),
                            },
                        }
                    )
                    continue
                results.append(
                    {
                        "status": "success",
                        "taskId": task.id,
                        "eTag": task.etag,
                        "lastModified": iso(task.last_modified),
                        "location": f"{self.endpoint}/jobs/{job.id}/tasks/{task.id}",
                    }
                )
            self.changed.notify_all()
        return Reply(200, {"odata.metadata": f"{self.endpoint}/$metadata#taskaddresult", "value": results})

    def op_Tasks_GetTask(self, call: Call) -> Reply:
        with self.lock:
            job = self.job(call.params["jobId"])
            task = self.task(job, call.params["taskId"])
            doc = apply_select(task.to_json(self.endpoint, job), call.query.get("$select"))
            doc["odata.metadata"] = f"{self.endpoint}/$metadata#tasks/@Element"
            return Reply(
                200, doc, self._entity_headers(task, f"{self.endpoint}/jobs/{job.id}/tasks/{task.id}")
            )

    def op_Tasks_ListTasks(self, call: Call) -> Reply:
        with self.lock:
            job = self.job(call.params["jobId"])
            renders = {key: partial(task.to_json, self.endpoint, job) for key, task in job.tasks.items()}
            return self._list_lazily(call, renders, "tasks", f"/jobs/{job.id}/tasks")

    def op_Tasks_DeleteTask(self, call: Call) -> Reply:
        with self.lock:
            job = self.writable_job(call.params["jobId"])
            task = self.task(job, call.params["taskId"])
            if task.proc is not None:
                task.kill_reason = "delete"
                kill_process_group(task.proc)
            del job.tasks[task.id.lower()]
            self.changed.notify_all()
            return Reply(200, None)

    def op_Tasks_TerminateTask(self, call: Call) -> Reply:
        with self.lock:
            job = self.writable_job(call.params["jobId"])
            task = self.task(job, call.params["taskId"])
            if task.state == "completed":
                raise BatchServiceError(
                    409, "TaskCompleted", "The specified task is already in a completed state."
                )
            if task.proc is not None:
                task.kill_reason = "terminate"
                kill_process_group(task.proc)
            elif task.state == "active":
                task.complete(
                    result="failure",
                    failure=("usererror", "TaskEnded", "Task Was Ended by User Request"),
                )
            url = f"{self.endpoint}/jobs/{job.id}/tasks/{task.id}"
            return Reply(204, None, self._entity_headers(task, url))

    def op_Tasks_ReactivateTask(self, call: Call) -> Reply:
        with self.lock:
            job = self.writable_job(call.params["jobId"])
            task = self.task(job, call.params["taskId"])
            if task.state != "completed":
                raise BatchServiceError(
                    409,
                    "TaskNotCompleted",
                    "The specified task is not in a completed state, and the requested operation can be "
                    "performed "
                    "only on completed tasks.",
                )
            if task.execution.get("result") == "success":
                raise BatchServiceError(
                    409,
                    "TaskSucceeded",
                    "The specified task has already completed successfully, and the requested operation "
                    "cannot be "
                    "performed on successful tasks.",
                )
            task.execution = {"retryCount": 0, "requeueCount": 0}
            task.set_state("active")
            self.changed.notify_all()
            return Reply(
                204, None, self._entity_headers(task, f"{self.endpoint}/jobs/{job.id}/tasks/{task.id}")
            )

    def _task_dir(self, job: Job, task: Task) -> Path:
        if task.last_node is None:
            raise BatchServiceError(
                409,
                "OperationInvalidForCurrentState",
                "The specified operation is not valid for the current state of the resource.",
                {"Reason": "The task has not been scheduled on a node yet."},
            )
        pool_id, node_id = task.last_node
        return self.node_root(pool_id, node_id) / "workitems" / job.id / "job-1" / task.id

    def op_Tasks_GetTaskFile(self, call: Call, head: bool = False) -> Reply:
        with self.lock:
            job = self.job(call.params["jobId"])
            task = self.task(job, call.params["taskId"])
            base = self._task_dir(job, task)
            rel = call.params["filePath"]
            url = f"{self.endpoint}/jobs/{job.id}/tasks/{task.id}/files/{quote(rel)}"
            return self._file_reply(base, rel, url, head, call.headers)

    def op_Tasks_GetTaskFileProperties(self, call: Call) -> Reply:
        return self.op_Tasks_GetTaskFile(call, head=True)

    def op_Tasks_ListTaskFiles(self, call: Call) -> Reply:
        with self.lock:
            job = self.job(call.params["jobId"])
            task = self.task(job, call.params["taskId"])
            base = self._task_dir(job, task)
            prefix = f"{self.endpoint}/jobs/{job.id}/tasks/{task.id}/files"
            return self._list_files(call, base, prefix, "files", f"/jobs/{job.id}/tasks/{task.id}/files")
