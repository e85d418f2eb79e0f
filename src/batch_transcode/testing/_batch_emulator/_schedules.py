"""Job schedules: the ``JobSchedules_*`` operationIds and the jobs they create.

As in the Azure Batch REST API reference, Job Schedules group
(https://learn.microsoft.com/rest/api/batchservice/job-schedules): Create, Get, Exists
(HEAD), List, Update (PATCH: the properties given replace the schedule's), Replace (PUT:
``schedule``, ``jobSpecification`` and ``metadata`` replaced, ``metadata`` reset when
absent), Disable, Enable, Terminate, Delete, and List Jobs From Schedule. Changes to a
schedule affect only the jobs created after them.

The schedule (``BatchJobScheduleConfiguration``) runs as the reference describes it: the
first job at ``doNotRunUntil`` (at once without it), then one every ``recurrenceInterval``
(at least one minute); at most one active job at a time, so a run that comes while the
previous job is active waits for it, and is lost if ``startWindow`` passes first; no job
after ``doNotRunAfter``, and the schedule completes once that is past and no job is
active. A schedule without ``recurrenceInterval`` creates one job; the emulator completes
such a schedule when that job completes (nothing can run under it any more). Jobs are
named ``{schedule id}:job-{n}``, as the service names them, and carry the
``jobSpecification``. Terminating a schedule terminates its active job; deleting it
deletes its jobs. The error codes are the service's: ``JobScheduleNotFound``,
``JobScheduleExists``, ``JobScheduleBeingDeleted``, ``JobScheduleBeingTerminated``,
``JobScheduleCompleted``, ``JobScheduleDisabled`` (``BatchErrorCode`` in the Azure SDK
for .NET, Azure.Compute.Batch).

:class:`JobScheduleOperations` keeps the schedules and runs them in a thread of its own
(:meth:`JobScheduleOperations.run`), which the service starts.
"""

from __future__ import annotations

import copy
import datetime as dt
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from ._errors import BatchServiceError, invalid_value
from ._images import check_image
from ._jobs import JobOperations
from ._model import JSON, Resource, iso, now, rfc1123
from ._odata import duration_seconds
from ._rest import Call, Operations, Reply, check_id
from ._state import DELETE_DELAY, AccountState

LOG = logging.getLogger(__name__)

#: The shortest ``recurrenceInterval`` the service accepts (REST reference).
MIN_RECURRENCE = 60.0
#: How often the schedule thread looks at the clock when nothing else wakes it.
_TICK = 0.1
_MESSAGES = {
    "JobScheduleNotFound": (404, "The specified job schedule does not exist."),
    "JobScheduleExists": (409, "The specified job schedule already exists."),
    "JobScheduleBeingDeleted": (409, "The specified job schedule has been marked for deletion."),
    "JobScheduleBeingTerminated": (409, "The specified job schedule is being terminated."),
    "JobScheduleCompleted": (409, "The specified job schedule is already in a completed state."),
    "JobScheduleDisabled": (409, "The specified job schedule is disabled."),
}


def _error(code: str) -> BatchServiceError:
    status, message = _MESSAGES[code]
    return BatchServiceError(status, code, message)


def _when(value: Any, prop: str) -> dt.datetime | None:
    if value is None:
        return None
    try:
        parsed = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError as exc:
        raise invalid_value(prop, value, "The value is not a valid date and time.") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


@dataclass
class _Plan:
    """A ``BatchJobScheduleConfiguration``, read."""

    not_until: dt.datetime | None
    not_after: dt.datetime | None
    window: float | None
    every: float | None

    @classmethod
    def read(cls, doc: JSON | None) -> _Plan:
        doc = doc or {}
        every = doc.get("recurrenceInterval")
        window = doc.get("startWindow")
        plan = cls(
            _when(doc.get("doNotRunUntil"), "schedule.doNotRunUntil"),
            _when(doc.get("doNotRunAfter"), "schedule.doNotRunAfter"),
            duration_seconds(window, "schedule.startWindow") if window is not None else None,
            duration_seconds(every, "schedule.recurrenceInterval") if every is not None else None,
        )
        if plan.every is not None and plan.every < MIN_RECURRENCE:
            raise invalid_value(
                "schedule.recurrenceInterval", every, "The minimum recurrence interval is 1 minute."
            )
        return plan


@dataclass
class JobSchedule(Resource):
    """A job schedule: its properties (``spec``), runs so far and the next one."""

    spec: JSON = field(default_factory=dict)
    previous_state: str | None = None
    previous_state_time: dt.datetime | None = None
    next_run: dt.datetime | None = None
    runs: int = 0
    job_ids: list[str] = field(default_factory=list)
    end_time: dt.datetime | None = None
    delete_due: float = 0.0

    @property
    def path(self) -> str:
        return f"/jobschedules/{self.id}"

    @property
    def plan(self) -> _Plan:
        return _Plan.read(self.spec.get("schedule"))

    def move(self, state: str) -> None:
        """Enter ``state``, remembering the one left."""
        if state != self.state:
            self.previous_state, self.previous_state_time = self.state, self.state_time
            self.set_state(state)
            if state == "completed":
                self.end_time = now()

    def to_json(self, endpoint: str) -> JSON:
        doc = copy.deepcopy(self.spec)
        recent = self.job_ids[-1] if self.job_ids else None
        execution: JSON = {
            "nextRunTime": iso(self.next_run) if self.state == "active" else None,
            "recentJob": {"id": recent, "url": f"{endpoint}/jobs/{recent}"} if recent else None,
            "endTime": iso(self.end_time),
        }
        doc.update(
            {
                **self._properties(endpoint + self.path),
                "previousState": self.previous_state,
                "previousStateTransitionTime": iso(self.previous_state_time),
                "schedule": doc.get("schedule") or {},
                "executionInfo": {k: v for k, v in execution.items() if v is not None},
            }
        )
        return {k: v for k, v in doc.items() if v is not None}


class JobScheduleOperations(Operations):
    """``JobSchedules_*`` and ``Jobs_ListJobsFromSchedule``; the schedules of the account
    (lower-case id -> schedule, guarded by the account's lock)."""

    def __init__(self, state: AccountState, jobs: JobOperations) -> None:
        super().__init__(state)
        self._jobs = jobs
        self.schedules: dict[str, JobSchedule] = {}

    # ------------------------------------------------------------------ look-ups

    def _schedule(self, schedule_id: str) -> JobSchedule:
        found = self.schedules.get(schedule_id.lower())
        if found is None:
            raise _error("JobScheduleNotFound")
        return found

    def _changeable(self, schedule_id: str) -> JobSchedule:
        schedule = self._schedule(schedule_id)
        if schedule.state == "deleting":
            raise _error("JobScheduleBeingDeleted")
        if schedule.state == "terminating":
            raise _error("JobScheduleBeingTerminated")
        if schedule.state == "completed":
            raise _error("JobScheduleCompleted")
        return schedule

    def _headers(self, schedule: JobSchedule) -> dict[str, str]:
        return {
            "ETag": schedule.etag,
            "Last-Modified": rfc1123(schedule.last_modified),
            "DataServiceId": f"{self.state.endpoint}{schedule.path}",
        }

    @staticmethod
    def _check_job_specification(spec: JSON) -> None:
        pool_info = spec.get("poolInfo") or {}
        if bool(pool_info.get("poolId")) == bool(pool_info.get("autoPoolSpecification")):
            raise invalid_value(
                "jobSpecification.poolInfo",
                "",
                "Exactly one of poolId and autoPoolSpecification must be specified.",
            )
        auto = pool_info.get("autoPoolSpecification") or {}
        check_image(auto.get("pool") or {})

    # ------------------------------------------------------------------ operations

    def op_JobSchedules_CreateJobSchedule(self, call: Call) -> Reply:
        body = call.body
        with self.state.lock:
            schedule_id = check_id(body["id"])
            if schedule_id.lower() in self.schedules:
                raise _error("JobScheduleExists")
            plan = _Plan.read(body.get("schedule"))
            self._check_job_specification(body["jobSpecification"])
            schedule = JobSchedule(id=schedule_id, spec=copy.deepcopy(body))
            schedule.next_run = plan.not_until or schedule.creation_time
            self.schedules[schedule_id.lower()] = schedule
            LOG.info("job schedule %s created", schedule_id)
            self.state.changed.notify_all()
            url = f"{self.state.endpoint}{schedule.path}"
            return Reply(201, None, {**self._headers(schedule), "Location": url})

    def op_JobSchedules_GetJobSchedule(self, call: Call) -> Reply:
        with self.state.lock:
            schedule = self._schedule(call.params["jobScheduleId"])
            doc = self._element(call, schedule.to_json(self.state.endpoint), "jobschedules")
            return Reply(200, doc, self._headers(schedule))

    def op_JobSchedules_JobScheduleExists(self, call: Call) -> Reply:
        with self.state.lock:
            schedule = self.schedules.get(call.params["jobScheduleId"].lower())
            return Reply(404, None) if schedule is None else Reply(200, None, self._headers(schedule))

    def op_JobSchedules_ListJobSchedules(self, call: Call) -> Reply:
        with self.state.lock:
            docs = [s.to_json(self.state.endpoint) for s in self.schedules.values()]
        return self._list(call, docs, "jobschedules", "/jobschedules")

    def op_Jobs_ListJobsFromSchedule(self, call: Call) -> Reply:
        with self.state.lock:
            schedule = self._schedule(call.params["jobScheduleId"])
            jobs = [self.state.jobs.get(j.lower()) for j in schedule.job_ids]
            docs = [j.to_json(self.state.endpoint) for j in jobs if j is not None]
        return self._list(call, docs, "jobs", f"{schedule.path}/jobs")

    def op_JobSchedules_UpdateJobSchedule(self, call: Call) -> Reply:
        return self._change(call, replace=False)

    def op_JobSchedules_ReplaceJobSchedule(self, call: Call) -> Reply:
        return self._change(call, replace=True)

    def _change(self, call: Call, *, replace: bool) -> Reply:
        """Update (the properties given) or Replace (``metadata`` reset when absent)."""
        body = call.body or {}
        with self.state.lock:
            schedule = self._changeable(call.params["jobScheduleId"])
            if "schedule" in body:
                _Plan.read(body["schedule"])
            if "jobSpecification" in body:
                self._check_job_specification(body["jobSpecification"])
            for key in ("schedule", "jobSpecification", "metadata"):
                if key in body:
                    schedule.spec[key] = copy.deepcopy(body[key])
                elif replace and key == "metadata":
                    schedule.spec.pop(key, None)
            if "schedule" in body:
                plan = schedule.plan
                if schedule.runs == 0:
                    schedule.next_run = plan.not_until or now()
                elif plan.every is None:
                    schedule.next_run = None
            schedule.touch()
            self.state.changed.notify_all()
            return Reply(200, None, self._headers(schedule))

    def op_JobSchedules_DisableJobSchedule(self, call: Call) -> Reply:
        with self.state.lock:
            schedule = self._changeable(call.params["jobScheduleId"])
            schedule.move("disabled")
            return Reply(204, None, self._headers(schedule))

    def op_JobSchedules_EnableJobSchedule(self, call: Call) -> Reply:
        with self.state.lock:
            schedule = self._changeable(call.params["jobScheduleId"])
            schedule.move("active")
            self.state.changed.notify_all()
            return Reply(204, None, self._headers(schedule))

    def op_JobSchedules_TerminateJobSchedule(self, call: Call) -> Reply:
        with self.state.lock:
            schedule = self._changeable(call.params["jobScheduleId"])
            schedule.move("terminating")
            for job in self._active_jobs(schedule):
                self.state.terminate_job(job, "UserTerminate")
            self.state.changed.notify_all()
            return Reply(202, None, self._headers(schedule))

    def op_JobSchedules_DeleteJobSchedule(self, call: Call) -> Reply:
        with self.state.lock:
            schedule = self._schedule(call.params["jobScheduleId"])
            if schedule.state == "deleting":
                raise _error("JobScheduleBeingDeleted")
            schedule.move("deleting")
            schedule.delete_due = time.monotonic() + DELETE_DELAY
            for job_id in schedule.job_ids:
                job = self.state.jobs.get(job_id.lower())
                if job is not None and job.state != "deleting":
                    self._jobs.op_Jobs_DeleteJob(Call("Jobs_DeleteJob", {"jobId": job.id}, {}, None, {}))
            LOG.info("job schedule %s deleting", schedule.id)
            self.state.changed.notify_all()
            return Reply(202, None)

    # ------------------------------------------------------------------ running schedules

    def _active_jobs(self, schedule: JobSchedule) -> list[Any]:
        jobs = (self.state.jobs.get(j.lower()) for j in schedule.job_ids)
        return [j for j in jobs if j is not None and j.state not in ("completed", "deleting")]

    def run(self) -> None:
        """The schedule thread: create the jobs that are due, complete and remove schedules,
        until the account stops."""
        while not self.state.stopping.is_set():
            with self.state.lock:
                try:
                    for key, schedule in list(self.schedules.items()):
                        self._tick(key, schedule)
                except Exception:
                    LOG.exception("job schedule tick failed")
                self.state.changed.wait(_TICK)

    def _tick(self, key: str, schedule: JobSchedule) -> None:
        active = self._active_jobs(schedule)
        if schedule.state == "deleting":
            jobs_left = any(j.lower() in self.state.jobs for j in schedule.job_ids)
            if time.monotonic() >= schedule.delete_due and not jobs_left:
                del self.schedules[key]
                LOG.info("job schedule %s deleted", schedule.id)
            return
        if schedule.state == "terminating":
            if not active:
                schedule.move("completed")
            return
        if schedule.state != "active":
            return
        plan, stamp = schedule.plan, now()
        if plan.not_after is not None and stamp >= plan.not_after:
            schedule.next_run = None
        if schedule.next_run is None:
            if not active:
                schedule.move("completed")
            return
        if stamp < schedule.next_run:
            return
        if plan.window is not None and stamp > schedule.next_run + dt.timedelta(seconds=plan.window):
            self._advance(schedule, plan, stamp)  # the opportunity is lost
            return
        if not active:
            self._run_job(schedule)
            self._advance(schedule, plan, stamp)

    @staticmethod
    def _advance(schedule: JobSchedule, plan: _Plan, stamp: dt.datetime) -> None:
        """The next run after ``stamp`` (runs missed while disabled or busy are not made up),
        or none without a recurrence."""
        if plan.every is None or schedule.next_run is None:
            schedule.next_run = None
            return
        step = dt.timedelta(seconds=plan.every)
        while schedule.next_run <= stamp:
            schedule.next_run += step

    def _run_job(self, schedule: JobSchedule) -> None:
        schedule.runs += 1
        job_id = f"{schedule.id}:job-{schedule.runs}"
        spec = {**copy.deepcopy(schedule.spec["jobSpecification"]), "id": job_id}
        try:
            self._jobs.add_job(job_id, spec)
        except BatchServiceError as exc:
            LOG.warning("job schedule %s could not create job %s: %s", schedule.id, job_id, exc)
            return
        schedule.job_ids.append(job_id)
        schedule.touch()
        LOG.info("job schedule %s created job %s", schedule.id, job_id)
