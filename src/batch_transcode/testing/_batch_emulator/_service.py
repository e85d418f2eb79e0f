"""The emulated Batch account: state, dispatch and lifecycle.

:class:`Service` is the account. It holds the state (:class:`~._state.AccountState`:
pools, jobs, the lock), finds the operation that answers a request (:meth:`Service.handler`,
a table from operationId to the ``op_<operationId>`` methods of the operation groups in
``_pools``, ``_jobs``, ``_tasks`` and ``_schedules``), starts and stops the scheduler (``_scheduler``, which
has the runner, ``_runner``, run start tasks and tasks as real processes), and answers the
emulator's inspection calls (snapshots, :meth:`Service.wait_idle`).

Node allocation takes ``allocation_delay`` seconds; node ids, IP addresses and agent
versions are made up.
"""

from __future__ import annotations

import itertools
import time
from typing import Unpack

from batch_transcode._process import kill_process_group

from ._dependencies import Dependencies
from ._jobs import JobOperations
from ._model import Job, JobSnapshot, Pool, PoolSnapshot, TaskSnapshot
from ._pools import NodeOperations, PoolOperations
from ._rest import Handler
from ._scheduler import Scheduler
from ._schedules import JobScheduleOperations
from ._state import AccountSettings, AccountState
from ._tasks import TaskOperations


class Service(AccountState):
    """One emulated Batch account: its state, the operations that answer requests, and the
    scheduler that runs its pools, jobs and tasks."""

    def __init__(self, **settings: Unpack[AccountSettings]) -> None:
        super().__init__(**settings)
        self._scheduler = Scheduler(self)
        self._handlers: dict[str, Handler] = {}
        jobs = JobOperations(self)
        self._schedules = JobScheduleOperations(self, jobs)
        for group in (
            PoolOperations(self),
            NodeOperations(self),
            jobs,
            TaskOperations(self),
            self._schedules,
        ):
            self._handlers.update(group.handlers())

    def handler(self, operation: str) -> Handler | None:
        """The method that answers ``operation`` (a spec operationId such as
        ``Tasks_ListTasks``), or None when the emulator does not implement it."""
        return self._handlers.get(operation)

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        (self.workdir / "nodes").mkdir(parents=True, exist_ok=True)
        self._scheduler.start()
        self.spawn(self._schedules.run, "batch-emulator-job-schedules")

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
                for task in job.tasks.in_state("running", "preparing"):
                    if task.proc is not None:
                        task.kill_reason = task.kill_reason or "shutdown"
                        procs.append(task.proc)
        for proc in procs:
            kill_process_group(proc)
        self._scheduler.join(timeout=10)
        self.join_workers(timeout=10)

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no task is running or waiting to run on a usable pool. A task whose
        dependencies are not met is not waiting to run: what it waits for is running or
        waiting itself, or it is blocked (a failed or missing task) and waits for ever."""
        deadline = time.monotonic() + timeout
        with self.lock:
            while True:
                busy = any(self._busy(j) for j in self.jobs.values() if j.state in ("active", "terminating"))
                if not busy:
                    return True
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.changed.wait(min(left, 0.1))

    def _busy(self, job: Job) -> bool:
        if job.tasks.count("running", "preparing"):
            return True
        if self._runnable_pool(job) is None:
            return False
        deps = Dependencies(job)
        waiting = (job.tasks[key] for _, key in job.tasks.runnable())
        return any(deps.met(t) for t in itertools.chain(waiting, job.tasks.held()))

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
    # what the emulator's inspection calls answer: copies, made under the lock

    def snapshot_pools(self) -> list[PoolSnapshot]:
        with self.lock:
            return [p.snapshot() for p in self.pools.values()]

    def snapshot_jobs(self) -> list[JobSnapshot]:
        with self.lock:
            return [j.snapshot() for j in self.jobs.values()]

    def snapshot_tasks(self, job_id: str) -> list[TaskSnapshot]:
        with self.lock:
            job = self.jobs.get(job_id.lower())
            if job is None:
                return []
            return [t.snapshot() for t in job.tasks.values()]
