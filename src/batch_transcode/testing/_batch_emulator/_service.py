"""The emulated Batch account: operations, scheduler and task execution.

Every REST operation is a method ``op_<operationId>`` taking a :class:`Call` and
returning a :class:`Reply`. A scheduler thread moves pools, nodes, jobs and tasks
through their states; each start task and task run happens in its own thread with a
real process.

Approximations (documented in the package docstring too):

- Autoscale formulas are not evaluated. A pool with ``enableAutoScale`` gets
  ``min(pending tasks, cap)`` nodes, where pending tasks are the active and running
  tasks of the jobs on the pool and ``cap`` is the largest integer literal in the
  formula (10 if there is none). The nodes are Spot when the formula sets only
  ``$TargetLowPriorityNodes``, dedicated otherwise.
- Node allocation takes ``allocation_delay`` seconds; node ids, IP addresses and
  agent versions are made up.
"""

from __future__ import annotations

import copy
import logging
import os
import re
import shutil
import subprocess
import threading
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
from ._executor import (
    PreparationError,
    download_resource_files,
    find_ffmpeg,
    launch,
    make_node_image,
    upload_output_files,
)
from ._faults import Faults
from ._model import (
    JSON,
    Job,
    JobSnapshot,
    Node,
    Pool,
    PoolSnapshot,
    Task,
    TaskSnapshot,
    iso,
    metadata_dict,
    now,
)
from ._odata import apply_select, duration_seconds, parse_filter
from ._state import DELETE_DELAY, AccountState

LOG = logging.getLogger(__name__)

MAX_RESULTS = 1000
MAX_TASKS_PER_COLLECTION = 100
MAX_BODY_BYTES = 1024 * 1024
PREEMPT_AFTER = 0.15  # seconds into a run a preempted node goes away
PREEMPT_RECOVERY = 0.3  # seconds a preempted Spot node takes to come back
MAX_TICK_PAUSE = 0.02  # longest pause the scheduler takes after an expensive tick (seconds)
_FAILING_START_TASK = (
    "/bin/bash -c 'echo \"E: Unable to locate package ffmpeg (emulated start task failure)\" >&2; exit 100'"
)
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


def _env_list(items: Any) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in items or []}


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
        self._scheduler: threading.Thread | None = None
        self._ffmpeg = find_ffmpeg()
        self._base_path = os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin")

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        (self.workdir / "nodes").mkdir(parents=True, exist_ok=True)
        self._scheduler = threading.Thread(
            target=self._schedule_loop, name="batch-emulator-scheduler", daemon=True
        )
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
        if self._scheduler is not None:
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

    # ------------------------------------------------------------------ scheduler

    def _schedule_loop(self) -> None:
        while not self.stopping.is_set():
            with self.lock:
                started = time.monotonic()
                try:
                    self._tick()
                except Exception:
                    LOG.exception("emulator scheduler tick failed")
                spent = time.monotonic() - started
                self.changed.wait(0.05)
            # A tick walks every task of every active job. With thousands of tasks, a burst of
            # changes (hundreds of tasks ending each second) makes one tick, not one per change:
            # the scheduler keeps to about a fifth of a core.
            pause = min(MAX_TICK_PAUSE, 4 * spent)
            if pause > 0.001:
                self.stopping.wait(pause)

    def _tick(self) -> None:
        mono = time.monotonic()
        for key, pool in list(self.pools.items()):
            if pool.state == "deleting":
                busy = any(n.running or n.start_proc is not None for n in pool.nodes.values())
                if mono >= pool.delete_due and not busy:
                    del self.pools[key]
                    shutil.rmtree(self.workdir / "nodes" / pool.id, ignore_errors=True)
                    LOG.info("pool %s deleted", pool.id)
                    self.changed.notify_all()
                continue
            self._tick_pool(pool, mono)
        for key, job in list(self.jobs.items()):
            self._tick_job(key, job, mono)
        self._dispatch()

    def _tick_pool(self, pool: Pool, mono: float) -> None:
        if pool.spec.get("enableAutoScale") and pool.allocation_state == "steady":
            dedicated, low = self.autoscale_target(pool, str(pool.spec.get("autoScaleFormula", "")))
            if (dedicated, low) != (pool.target_dedicated, pool.target_low_priority):
                # Scale down only idle nodes (taskcompletion), like $NodeDeallocationOption = taskcompletion.
                shrink_blocked = sum(1 for n in pool.nodes.values() if n.running) > dedicated + low
                if not shrink_blocked:
                    self.resize(pool, dedicated, low)
        if pool.allocation_state == "resizing" and mono >= pool.resize_due:
            self._finish_resize(pool, mono)
        for node in pool.nodes.values():
            due = node.ready_at if node.state == "creating" else node.preempted_until
            if node.state in ("creating", "preempted") and mono >= due:
                node.set_state("starting")
                self._start_node(pool, node)

    def _finish_resize(self, pool: Pool, mono: float) -> None:
        faults = self.injector.faults
        for dedicated, target in ((True, pool.target_dedicated), (False, pool.target_low_priority)):
            have = [n for n in pool.nodes.values() if n.dedicated == dedicated]
            if len(have) > target:
                # Shrink: idle nodes first; running tasks are requeued.
                have.sort(key=lambda n: (bool(n.running), n.state != "idle"))
                for node in have[: len(have) - target]:
                    self.evict_node(pool, node, "requeue")
                    del pool.nodes[node.id]
                    for k in list(node.running):
                        node.running.pop(k, None)
            elif len(have) < target:
                if faults.allocation_failure:
                    code = faults.allocation_failure_code
                    message = {
                        "AccountCoreQuotaReached": "The specified account has reached its VM core quota.",
                        "AccountLowPriorityCoreQuotaReached": (
                            "The specified account has reached its Spot core quota."
                        ),
                    }.get(code, "Desired number of dedicated nodes could not be allocated.")
                    pool.resize_errors.append(
                        {
                            "code": code,
                            "message": message,
                            "values": [{"name": "VmSize", "value": str(pool.spec.get("vmSize", ""))}],
                        }
                    )
                    LOG.info("pool %s allocation failed (%s)", pool.id, code)
                    continue
                for _ in range(target - len(have)):
                    node_id = pool.new_node_id()
                    root = self.node_root(pool.id, node_id)
                    for sub in ("shared", "startup", "workitems", "bin"):
                        (root / sub).mkdir(parents=True, exist_ok=True)
                    make_node_image(root / "bin", self._ffmpeg)
                    node = Node(id=node_id, pool_id=pool.id, dedicated=dedicated, root=root, ready_at=mono)
                    pool.nodes[node_id] = node
        pool.set_allocation("steady")
        self.changed.notify_all()

    def _node_env(self, pool: Pool, node: Node) -> dict[str, str]:
        root = node.root
        return {
            "PATH": f"{root / 'bin'}{os.pathsep}{self._base_path}",
            "HOME": str(root),
            "LANG": "C.UTF-8",
            "AZ_BATCH_ACCOUNT_NAME": self.account,
            "AZ_BATCH_ACCOUNT_URL": self.endpoint,
            "AZ_BATCH_POOL_ID": pool.id,
            "AZ_BATCH_NODE_ID": node.id,
            "AZ_BATCH_NODE_IS_DEDICATED": "true" if node.dedicated else "false",
            "AZ_BATCH_NODE_ROOT_DIR": str(root),
            "AZ_BATCH_NODE_SHARED_DIR": str(root / "shared"),
            "AZ_BATCH_NODE_STARTUP_DIR": str(root / "startup"),
            "AZ_BATCH_NODE_STARTUP_WORKING_DIR": str(root / "startup" / "wd"),
            "AZ_BATCH_OS_RESERVED_EPHEMERAL_DISK_SPACE_BYTES": "1000000000",
            "AZ_BATCH_RESERVED_EPHEMERAL_DIR": str(root / "reserved"),
        }

    def _start_node(self, pool: Pool, node: Node) -> None:
        start = pool.spec.get("startTask")
        if not start:
            node.set_state("idle")
            self.changed.notify_all()
            return
        wait = bool(start.get("waitForSuccess", True))
        node.set_state("waitingforstarttask" if wait else "idle")
        node.start_task_info = {"state": "running", "startTime": iso(now()), "retryCount": 0}
        spec = copy.deepcopy(start)
        env = self._node_env(pool, node)
        self.spawn(lambda: self._run_start_task(pool, node, spec, env, wait), f"start-task-{node.id}")

    def _run_start_task(self, pool: Pool, node: Node, spec: JSON, env: dict[str, str], wait: bool) -> None:
        startup = node.root / "startup"
        wd = startup / "wd"
        wd.mkdir(parents=True, exist_ok=True)
        env = {
            **env,
            "AZ_BATCH_TASK_DIR": str(startup),
            "AZ_BATCH_TASK_WORKING_DIR": str(wd),
            "AZ_BATCH_TASK_USER_IDENTITY": "PoolNonAdmin",
            **_env_list(spec.get("environmentSettings")),
        }
        max_retries = int(spec.get("maxTaskRetryCount", 0))
        retries = 0
        while True:
            exit_code: int | None = None
            failure: tuple[str, str, str] | None = None
            try:
                download_resource_files(spec.get("resourceFiles") or [], wd)
                command = spec["commandLine"]
                if self.injector.faults.start_task_failure:
                    command = _FAILING_START_TASK
                with self.lock:
                    if self.stopping.is_set() or pool.state == "deleting":
                        return
                    proc = launch(
                        command, cwd=wd, env=env, stdout=startup / "stdout.txt", stderr=startup / "stderr.txt"
                    )
                    node.start_proc = proc
                exit_code = proc.wait()
            except PreparationError as exc:
                failure = (exc.category, exc.code, exc.message)
            with self.lock:
                node.start_proc = None
                if self.stopping.is_set() or pool.nodes.get(node.id) is not node:
                    return
                info = node.start_task_info or {}
                info["exitCode"] = exit_code
                if failure is None and exit_code != 0:
                    failure = (
                        "usererror",
                        "FailureExitCode",
                        "The task process exited with an unexpected exit code",
                    )
                if failure is not None and (max_retries == -1 or retries < max_retries):
                    retries += 1
                    info["retryCount"] = retries
                    info["lastRetryTime"] = iso(now())
                    continue
                info["state"] = "completed"
                info["endTime"] = iso(now())
                info["result"] = "success" if failure is None else "failure"
                if failure is not None:
                    category, code, message = failure
                    info["failureInfo"] = {
                        "category": category,
                        "code": code,
                        "message": message,
                        "details": [{"name": "Message", "value": message}],
                    }
                node.start_task_info = {k: v for k, v in info.items() if v is not None}
                node.touch()
                if node.state == "waitingforstarttask":
                    node.set_state("idle" if failure is None else "starttaskfailed")
                LOG.info(
                    "start task on %s/%s %s", pool.id, node.id, "succeeded" if failure is None else "failed"
                )
                self.changed.notify_all()
                return

    def _tick_job(self, key: str, job: Job, mono: float) -> None:
        if job.state == "deleting":
            if mono >= job.delete_due and not any(t.proc is not None for t in job.tasks.values()):
                del self.jobs[key]
                LOG.info("job %s deleted", job.id)
                self.changed.notify_all()
            return
        if job.state == "terminating":
            if not any(t.proc is not None or t.state in ("running", "preparing") for t in job.tasks.values()):
                job.end_time = now()
                job.set_state("completed")
                self.release_auto_pool(job)
                LOG.info("job %s completed (%s)", job.id, job.terminate_reason)
                self.changed.notify_all()
            return
        if job.state not in ("active", "disabled"):
            return
        if job.deadline is not None and mono >= job.deadline:
            self.terminate_job(job, "MaxWallClockTimeExpiry")
            return
        if (
            job.spec.get("onAllTasksComplete", "noaction") == "terminatejob"
            and job.tasks
            and all(t.state == "completed" for t in job.tasks.values())
        ):
            self.terminate_job(job, "AllTasksComplete")

    def _dispatch(self) -> None:
        jobs = sorted(
            (j for j in self.jobs.values() if j.state == "active"),
            key=lambda j: (-int(j.spec.get("priority", 0)), j.creation_time),
        )
        for job in jobs:
            pool = self.pools.get(job.pool_id.lower())
            if pool is None or pool.state != "active":
                continue
            capacity = self._free_slots(pool)
            if capacity <= 0:
                continue  # every slot is busy: no need to look at the job's tasks
            limit = int(job.spec.get("maxParallelTasks", -1))
            running = (
                sum(1 for t in job.tasks.values() if t.state in ("running", "preparing"))
                if limit != -1
                else 0
            )
            for task in job.tasks.values():
                if task.state != "active" or task.proc is not None or task.node_key is not None:
                    continue
                if limit != -1 and running >= limit:
                    break
                if task.required_slots > capacity:
                    continue
                if not self._dependencies_met(job, task):
                    continue
                nodes = [
                    n
                    for n in pool.nodes.values()
                    if n.state in ("idle", "running")
                    and pool.slots_per_node - n.used_slots() >= task.required_slots
                ]
                if not nodes:
                    continue
                fill = (pool.spec.get("taskSchedulingPolicy") or {}).get("nodeFillType", "spread")
                nodes.sort(key=lambda n: n.used_slots(), reverse=(fill == "pack"))
                self._assign(job, task, pool, nodes[0])
                running += 1
                capacity = self._free_slots(pool)
                if capacity <= 0:
                    break

    @staticmethod
    def _free_slots(pool: Pool) -> int:
        """The most free task slots on one usable node of ``pool``."""
        return max(
            (
                pool.slots_per_node - n.used_slots()
                for n in pool.nodes.values()
                if n.state in ("idle", "running")
            ),
            default=0,
        )

    def _dependencies_met(self, job: Job, task: Task) -> bool:
        deps = task.spec.get("dependsOn") or {}
        ids = [str(i).lower() for i in deps.get("taskIds") or []]
        for r in deps.get("taskIdRanges") or []:
            ids.extend(str(i) for i in range(int(r["start"]), int(r["end"]) + 1))
        for dep_id in ids:
            dep = job.tasks.get(dep_id)
            if dep is None or dep.state != "completed" or dep.execution.get("result") != "success":
                return False
        return True

    def _assign(self, job: Job, task: Task, pool: Pool, node: Node) -> None:
        key = f"{job.id}/{task.id}"
        node.running[key] = task.required_slots
        node.set_state("running")
        task.node_key = (pool.id, node.id)
        task.last_node = (pool.id, node.id)
        task.run_serial += 1
        task_dir = node.root / "workitems" / job.id / "job-1" / task.id
        task.node_info = {
            "affinityId": f"TVM:{node.id}",
            "nodeUrl": f"{self.endpoint}/pools/{pool.id}/nodes/{node.id}",
            "poolId": pool.id,
            "nodeId": node.id,
            "taskRootDirectory": f"workitems/{job.id}/job-1/{task.id}",
            "taskRootDirectoryUrl": f"{self.endpoint}/pools/{pool.id}/nodes/{node.id}/files/"
            f"workitems/{job.id}/job-1/{task.id}",
        }
        task.execution["startTime"] = iso(now())
        for k in ("endTime", "exitCode", "result", "failureInfo"):
            task.execution.pop(k, None)
        task.set_state("running")
        preempt = (not node.dedicated) and self.injector.preempt()
        env = self._node_env(pool, node)
        env.update(
            {
                "AZ_BATCH_JOB_ID": job.id,
                "AZ_BATCH_TASK_ID": task.id,
                "AZ_BATCH_TASK_DIR": str(task_dir),
                "AZ_BATCH_TASK_WORKING_DIR": str(task_dir / "wd"),
                "AZ_BATCH_TASK_USER_IDENTITY": "PoolNonAdmin",
                "AZ_BATCH_JOB_PREP_DIR": str(node.root / "workitems" / job.id / "job-1" / "jobpreparation"),
                "AZ_BATCH_JOB_PREP_WORKING_DIR": str(
                    node.root / "workitems" / job.id / "job-1" / "jobpreparation" / "wd"
                ),
            }
        )
        env.update(_env_list(job.spec.get("commonEnvironmentSettings")))
        env.update(_env_list(task.spec.get("environmentSettings")))
        spec = copy.deepcopy(task.spec)
        constraints = spec.get("constraints") or {}
        wall = (
            duration_seconds(constraints["maxWallClockTime"], "maxWallClockTime")
            if "maxWallClockTime" in constraints
            else None
        )
        self.spawn(
            lambda: self._run_task(
                job, task, pool, node, spec, env, task_dir, wall, preempt, task.run_serial
            ),
            f"task-{job.id}-{task.id}",
        )

    def _run_task(
        self,
        job: Job,
        task: Task,
        pool: Pool,
        node: Node,
        spec: JSON,
        env: dict[str, str],
        task_dir: Path,
        wall: float | None,
        preempt: bool,
        serial: int,
    ) -> None:
        wd = task_dir / "wd"
        wd.mkdir(parents=True, exist_ok=True)
        failure: tuple[str, str, str] | None = None
        exit_code: int | None = None
        timed_out = False
        try:
            download_resource_files(spec.get("resourceFiles") or [], wd)
            with self.lock:
                if task.kill_reason is not None or self.stopping.is_set():
                    raise _Interrupted
                proc = launch(
                    spec["commandLine"],
                    cwd=wd,
                    env=env,
                    stdout=task_dir / "stdout.txt",
                    stderr=task_dir / "stderr.txt",
                )
                task.proc = proc
            started = time.monotonic()
            while True:
                try:
                    exit_code = proc.wait(timeout=0.05)
                    break
                except subprocess.TimeoutExpired:
                    pass
                elapsed = time.monotonic() - started
                if preempt and elapsed >= PREEMPT_AFTER:
                    with self.lock:
                        task.kill_reason = task.kill_reason or "preempt"
                    kill_process_group(proc)
                if wall is not None and elapsed >= wall:
                    timed_out = True
                    kill_process_group(proc)
            if preempt:
                with self.lock:
                    task.kill_reason = task.kill_reason or "preempt"
        except _Interrupted:
            pass
        except PreparationError as exc:
            failure = (exc.category, exc.code, exc.message)
        with self.lock:
            task.proc = None
            reason = task.kill_reason
            task.kill_reason = None
            node.running.pop(f"{job.id}/{task.id}", None)
            if node.state == "running" and not node.running:
                node.set_state("idle")
            task.node_key = None
            if reason in ("shutdown", "delete") or self.stopping.is_set():
                self.changed.notify_all()
                return
            if reason in ("requeue", "preempt"):
                if reason == "preempt" and pool.nodes.get(node.id) is node:
                    node.set_state("preempted")
                    node.preempted_until = time.monotonic() + PREEMPT_RECOVERY
                task.execution["requeueCount"] = int(task.execution.get("requeueCount", 0)) + 1
                task.execution["lastRequeueTime"] = iso(now())
                for k in ("startTime",):
                    task.execution.pop(k, None)
                task.set_state("active")
                LOG.info("task %s/%s requeued (%s)", job.id, task.id, reason)
                self.changed.notify_all()
                return
        succeeded = failure is None and exit_code == 0 and reason is None and not timed_out
        if failure is None and reason is None:
            try:
                upload_output_files(spec.get("outputFiles") or [], wd, succeeded=succeeded)
            except PreparationError as exc:
                failure = (exc.category, exc.code, exc.message)
                succeeded = False
        with self.lock:
            node.total_run += 1
            if succeeded:
                node.total_succeeded += 1
            node.recent = [
                *node.recent,
                {
                    "taskUrl": f"{self.endpoint}/jobs/{job.id}/tasks/{task.id}",
                    "jobId": job.id,
                    "taskId": task.id,
                    "taskState": "completed",
                    "executionInfo": {"retryCount": 0, "requeueCount": 0, "exitCode": exit_code},
                },
            ][-10:]
            task.execution["exitCode"] = exit_code
            if reason == "terminate":
                failure = ("usererror", "TaskEnded", "Task Was Ended by User Request")
            elif timed_out:
                failure = (
                    "usererror",
                    "MaxWallClockTimeExpiry",
                    "The task exceeded its maximum wall clock time",
                )
            elif failure is None and exit_code != 0:
                failure = (
                    "usererror",
                    "FailureExitCode",
                    "The task process exited with an unexpected exit code",
                )
            constraints = task.spec.get("constraints") or {}
            max_retries = int(
                constraints.get(
                    "maxTaskRetryCount", (job.spec.get("constraints") or {}).get("maxTaskRetryCount", 0)
                )
            )
            retries = int(task.execution.get("retryCount", 0))
            retryable = failure is not None and failure[1] == "FailureExitCode" and job.state == "active"
            if retryable and (max_retries == -1 or retries < max_retries):
                task.execution["retryCount"] = retries + 1
                task.execution["lastRetryTime"] = iso(now())
                task.set_state("active")
                LOG.info("task %s/%s exited %s; retry %d", job.id, task.id, exit_code, retries + 1)
                self.changed.notify_all()
                return
            task.complete(result="success" if succeeded else "failure", failure=failure)
            if failure is not None and job.spec.get("onTaskFailure") == "performexitoptionsjobaction":
                action = ((task.spec.get("exitConditions") or {}).get("default") or {}).get("jobAction")
                if action == "terminate" and job.state == "active":
                    self.terminate_job(job, "TaskFailed")
            self.changed.notify_all()


class _Interrupted(Exception):
    pass
