"""Job operations: the ``Jobs_*`` operationIds.

:class:`JobOperations` creates jobs (on a pool, or on an auto pool made from the job's
``autoPoolSpecification``), reads, lists, updates, replaces, disables, enables,
terminates and deletes them, and counts their tasks, as in the Azure Batch REST API
reference, Jobs group (https://learn.microsoft.com/rest/api/batchservice/jobs).
Completing a terminating job and removing a deleted one is the scheduler's work.
"""

from __future__ import annotations

import copy
import logging
import time
import uuid
from datetime import timedelta

from batch_transcode._process import kill_process_group

from ._errors import BatchServiceError, invalid_value
from ._model import JSON, Job, now
from ._odata import duration_seconds
from ._rest import Call, Operations, Reply, new_id, replace_properties, update_properties
from ._state import DELETE_DELAY

LOG = logging.getLogger(__name__)

#: What Replace Job sets (and resets when absent), as in its REST reference
#: (https://learn.microsoft.com/rest/api/batchservice/jobs/replace-job).
REPLACEABLE_JOB_PROPERTIES = (
    "priority",
    "maxParallelTasks",
    "allowTaskPreemption",
    "constraints",
    "onAllTasksComplete",
    "metadata",
)


class JobOperations(Operations):
    """``Jobs_*``: jobs and their task counts."""

    def op_Jobs_CreateJob(self, call: Call) -> Reply:
        with self.state.lock:
            job_id = new_id(call.body["id"], self.state.jobs, "Job")
            return self._created(self.add_job(job_id, call.body))

    def add_job(self, job_id: str, spec: JSON) -> Job:
        """Add job ``job_id`` of ``spec`` (a job's properties), on its pool or a new auto pool
        (Add Job, or a job schedule's run; under the lock)."""
        with self.state.lock:
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
                self.state.new_pool(pool_id, auto.get("pool") or {}, auto_for_job=job_id)
                job.pool_id = pool_id
                job.auto_pool = True
            else:
                job.pool_id = pool_info["poolId"]
            self.state.jobs[job_id.lower()] = job
            LOG.info("job %s created on pool %s", job_id, job.pool_id)
            self.state.changed.notify_all()
            return job

    def op_Jobs_GetJob(self, call: Call) -> Reply:
        with self.state.lock:
            return self._get(call, self.state.job(call.params["jobId"]), "jobs")

    def op_Jobs_ListJobs(self, call: Call) -> Reply:
        return self._list_all(call, self.state.jobs, "jobs")

    def op_Jobs_DeleteJob(self, call: Call) -> Reply:
        with self.state.lock:
            job = self.state.writable_job(call.params["jobId"])
            job.set_state("deleting")
            job.delete_due = time.monotonic() + DELETE_DELAY
            for task in job.tasks.in_state("running", "preparing"):
                if task.proc is not None:
                    task.kill_reason = "delete"
                    kill_process_group(task.proc)
            self.state.release_auto_pool(job)
            LOG.info("job %s deleting", job.id)
            self.state.changed.notify_all()
            return Reply(202, None)

    def op_Jobs_TerminateJob(self, call: Call) -> Reply:
        body = call.body or {}
        with self.state.lock:
            job = self.state.writable_job(call.params["jobId"])
            if job.state == "completed":
                raise BatchServiceError(
                    409, "JobCompleted", "The specified job is already in a completed state."
                )
            if job.state == "terminating":
                raise BatchServiceError(409, "JobBeingTerminated", "The specified job is being terminated.")
            self.state.terminate_job(job, body.get("terminateReason") or "UserTerminate")
            return self._reply(202, job)

    def op_Jobs_UpdateJob(self, call: Call) -> Reply:
        body = call.body or {}
        with self.state.lock:
            job = self.state.writable_job(call.params["jobId"])
            update_properties(job.spec, body, keep=("poolInfo",))
            if "constraints" in body and "maxWallClockTime" in body["constraints"]:
                seconds = duration_seconds(
                    body["constraints"]["maxWallClockTime"], "constraints.maxWallClockTime"
                )
                job.deadline = job.creation_time.timestamp() - time.time() + time.monotonic() + seconds
            self.state.changed.notify_all()
            return self._touched(200, job)

    def op_Jobs_ReplaceJob(self, call: Call) -> Reply:
        """Replace Job: the updatable properties take the body's values, and those it
        leaves out go back to their defaults (``priority`` 0, no constraints, ...). The
        pool stays (a job changes pools only while disabled; the emulator keeps it).

        ``usesTaskDependencies`` is fixed when the job is created: the body (a ``BatchJob``)
        may carry it, as it carries ``id`` or ``state``, but it is read-only there and not
        an updatable property ("This fully replaces all the updatable properties of the
        Job", https://learn.microsoft.com/rest/api/batchservice/jobs/replace-job), so a
        different value is ignored, like the other read-only ones. Update Job cannot
        name it at all: it is not a property of ``BatchJobUpdateOptions``, and the
        request is refused as the spec's unknown properties are."""
        body = call.body or {}
        with self.state.lock:
            job = self.state.writable_job(call.params["jobId"])
            replace_properties(job.spec, body, REPLACEABLE_JOB_PROPERTIES)
            constraints = body.get("constraints") or {}
            job.deadline = None
            if "maxWallClockTime" in constraints:
                seconds = duration_seconds(constraints["maxWallClockTime"], "constraints.maxWallClockTime")
                job.deadline = job.creation_time.timestamp() - time.time() + time.monotonic() + seconds
            self.state.changed.notify_all()
            return self._touched(200, job)

    def op_Jobs_ListJobPreparationAndReleaseTaskStatus(self, call: Call) -> Reply:
        """The emulator stores a job's preparation and release tasks but does not run
        them, so no node has a status to report: an empty list, as the service answers
        before any of the job's tasks ran."""
        with self.state.lock:
            job = self.state.job(call.params["jobId"])
        return self._list(
            call,
            [],
            "jobpreparationandreleasetaskstatuslist",
            f"/jobs/{job.id}/jobpreparationandreleasetaskstatus",
        )

    def op_Jobs_DisableJob(self, call: Call) -> Reply:
        with self.state.lock:
            job = self.state.writable_job(call.params["jobId"])
            if job.state != "active":
                raise BatchServiceError(409, "JobNotActive", "The specified job is not in active state.")
            self.state.disable_job(job, (call.body or {}).get("disableTasks", "requeue"))
            return self._reply(202, job)

    def op_Jobs_EnableJob(self, call: Call) -> Reply:
        with self.state.lock:
            job = self.state.writable_job(call.params["jobId"])
            if job.state == "disabled":
                job.set_state("active")
                self.state.changed.notify_all()
            return self._reply(202, job)

    def op_Jobs_GetJobTaskCounts(self, call: Call) -> Reply:
        with self.state.lock:
            job = self.state.job(call.params["jobId"])
            counts, slots = dict(job.tasks.counts), dict(job.tasks.slots)
            injector = self.state.injector
            if injector.counts_may_lag():
                # Stale counts (Faults.stale_counts_seconds, missed_count_rate): a task that
                # completed less than its lag ago still counts as running.
                stamp = now()
                window = stamp - timedelta(seconds=injector.max_lag())
                for key in job.tasks.entered_since("completed", window):
                    t = job.tasks[key]
                    lag = injector.counts_lag(t.id)
                    if lag > 0 and (stamp - t.state_time).total_seconds() < lag:
                        outcome = "succeeded" if t.execution.get("result") == "success" else "failed"
                        for name, step in (("running", 1), ("completed", -1), (outcome, -1)):
                            counts[name] += step
                            slots[name] += step * t.required_slots
            return Reply(200, {"taskCounts": counts, "taskSlotCounts": slots})
