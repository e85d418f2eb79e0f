"""The scheduler: one thread that moves pools, nodes, jobs and tasks through their states.

Each tick, under the account lock, it

- finishes pool resizes once ``allocation_delay`` has passed: new nodes get their
  directory and node image, surplus nodes are removed (idle ones first, running tasks are
  requeued), and ``resizeErrors`` are recorded when allocation failures are injected;
- resizes autoscale pools to :meth:`AccountState.autoscale_target` (an approximation,
  see ``_state``); a scale-down waits until no more nodes run tasks than the new target
  (like ``$NodeDeallocationOption = taskcompletion``,
  https://learn.microsoft.com/azure/batch/batch-automatic-scaling);
- starts nodes that came up (or came back from preemption) through the runner's start task;
- removes deleted pools and jobs, completes terminating jobs, and applies a job's
  ``maxWallClockTime`` and ``onAllTasksComplete``;
- dispatches active tasks from each job's queue of runnable ones (``_task_table``), in
  the order they were added: jobs by priority, then age; tasks whose dependencies are met
  (``_dependencies``: "Create task dependencies to run tasks that depend on other tasks",
  https://learn.microsoft.com/azure/batch/batch-task-dependencies),
  within ``maxParallelTasks`` and the pool's task slots, onto the node that ``nodeFillType``
  picks ("Run tasks concurrently", https://learn.microsoft.com/azure/batch/batch-parallel-node-tasks).
"""

from __future__ import annotations

import itertools
import logging
import shutil
import threading
import time

from ._dependencies import Dependencies, integer_id
from ._executor import find_ffmpeg, make_node_image
from ._model import Job, Node, Pool, Task, iso, now
from ._runner import Runner
from ._state import AccountState

LOG = logging.getLogger(__name__)

MAX_TICK_PAUSE = 0.02  # longest pause the scheduler takes after an expensive tick (seconds)


class Scheduler:
    """Schedules the account ``state``; its :class:`Runner` runs what it dispatches."""

    def __init__(self, state: AccountState) -> None:
        self.state = state
        self.runner = Runner(state)
        self._ffmpeg = find_ffmpeg()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="batch-emulator-scheduler", daemon=True)
        self._thread.start()

    def join(self, timeout: float) -> None:
        """Wait for the scheduler thread to end (it ends once ``state.stopping`` is set)."""
        if self._thread is not None:
            self._thread.join(timeout=timeout)

    def _loop(self) -> None:
        while not self.state.stopping.is_set():
            with self.state.lock:
                started = time.monotonic()
                try:
                    self._tick()
                except Exception:
                    LOG.exception("emulator scheduler tick failed")
                spent = time.monotonic() - started
                self.state.changed.wait(0.05)
            # A burst of changes (hundreds of tasks ending each second) makes one tick, not
            # one per change: the scheduler keeps to about a fifth of a core.
            pause = min(MAX_TICK_PAUSE, 4 * spent)
            if pause > 0.001:
                self.state.stopping.wait(pause)

    def _tick(self) -> None:
        mono = time.monotonic()
        for key, pool in list(self.state.pools.items()):
            if pool.state == "deleting":
                busy = any(n.running or n.start_proc is not None for n in pool.nodes.values())
                if mono >= pool.delete_due and not busy:
                    self.state.nodes_removed(pool, pool.nodes.values())
                    del self.state.pools[key]
                    shutil.rmtree(self.state.workdir / "nodes" / pool.id, ignore_errors=True)
                    LOG.info("pool %s deleted", pool.id)
                    self.state.changed.notify_all()
                continue
            self._tick_pool(pool, mono)
        for key, job in list(self.state.jobs.items()):
            self._tick_job(key, job, mono)
        self._dispatch()

    def _tick_pool(self, pool: Pool, mono: float) -> None:
        if pool.spec.get("enableAutoScale") and pool.allocation_state == "steady":
            dedicated, low = self.state.autoscale_target(pool, str(pool.spec.get("autoScaleFormula", "")))
            if (dedicated, low) != (pool.target_dedicated, pool.target_low_priority):
                # Scale down only idle nodes (taskcompletion), like $NodeDeallocationOption = taskcompletion.
                shrink_blocked = sum(1 for n in pool.nodes.values() if n.running) > dedicated + low
                if not shrink_blocked:
                    self.state.resize(pool, dedicated, low)
        if pool.allocation_state == "resizing" and mono >= pool.resize_due:
            self._finish_resize(pool, mono)
        if pool.allocation_state == "stopping" and mono >= pool.resize_due:
            pool.set_allocation("steady")
            self.state.changed.notify_all()
        for node in pool.nodes.values():
            due = node.ready_at if node.state == "creating" else node.preempted_until
            if node.state in ("creating", "preempted") and mono >= due:
                node.set_state("starting")
                self.runner.start_node(pool, node)

    def _finish_resize(self, pool: Pool, mono: float) -> None:
        faults = self.state.injector.faults
        for dedicated, target in ((True, pool.target_dedicated), (False, pool.target_low_priority)):
            have = [n for n in pool.nodes.values() if n.dedicated == dedicated]
            if len(have) > target:
                # Shrink: idle nodes first; running tasks are requeued.
                have.sort(key=lambda n: (bool(n.running), n.state != "idle"))
                for node in have[: len(have) - target]:
                    self.state.evict_node(pool, node, "requeue")
                    self.state.nodes_removed(pool, [node])
                    del pool.nodes[node.id]
                    for k in list(node.running):
                        node.running.pop(k, None)
            elif len(have) < target:
                if not dedicated and self.state.pool_allocation_mode == "BatchService":
                    # Low-priority nodes of Batch-service accounts were retired on 30 September
                    # 2025: "attempts to seek back to target low-priority node counts will fail"
                    # (https://learn.microsoft.com/azure/batch/low-priority-vms-retirement-migration-guide);
                    # Spot nodes need a user-subscription account (.../azure/batch/batch-spot-vms).
                    pool.resize_errors.append(
                        {
                            "code": "AccountLowPriorityCoreQuotaReached",
                            "message": "The specified account has reached its low priority core quota. "
                            "Spot nodes are available only in Batch accounts in user subscription pool "
                            "allocation mode.",
                            "values": [{"name": "VmSize", "value": str(pool.spec.get("vmSize", ""))}],
                        }
                    )
                    LOG.info("pool %s: no Spot nodes in a Batch-service account", pool.id)
                    continue
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
                    root = self.state.node_root(pool.id, node_id)
                    for sub in ("shared", "startup", "workitems", "bin"):
                        (root / sub).mkdir(parents=True, exist_ok=True)
                    make_node_image(root / "bin", self._ffmpeg)
                    node = Node(id=node_id, pool_id=pool.id, dedicated=dedicated, root=root, ready_at=mono)
                    pool.nodes[node_id] = node
                    self.state.node_allocated(pool, node)
        pool.set_allocation("steady")
        self.state.changed.notify_all()

    def _tick_job(self, key: str, job: Job, mono: float) -> None:
        if job.state == "deleting":
            live = any(t.proc is not None for t in job.tasks.in_state("running", "preparing"))
            if mono >= job.delete_due and not live:
                del self.state.jobs[key]
                LOG.info("job %s deleted", job.id)
                self.state.changed.notify_all()
            return
        if job.state == "terminating":
            if not job.tasks.count("running", "preparing"):
                job.end_time = now()
                job.set_state("completed")
                self.state.release_auto_pool(job)
                LOG.info("job %s completed (%s)", job.id, job.terminate_reason)
                self.state.changed.notify_all()
            return
        if job.state not in ("active", "disabled"):
            return
        if job.deadline is not None and mono >= job.deadline:
            self.state.terminate_job(job, "MaxWallClockTimeExpiry")
            return
        if (
            job.spec.get("onAllTasksComplete", "noaction") == "terminatejob"
            and job.tasks
            and job.tasks.counts["completed"] == len(job.tasks)
        ):
            self.state.terminate_job(job, "AllTasksComplete")

    def _dispatch(self) -> None:
        jobs = sorted(
            (j for j in self.state.jobs.values() if j.state == "active"),
            key=lambda j: (-int(j.spec.get("priority", 0)), j.creation_time),
        )
        for job in jobs:
            deps = Dependencies(job)
            self._release_held(job, deps)
            pool = self.state.pools.get(job.pool_id.lower())
            if pool is None or pool.state != "active":
                continue
            capacity = self._free_slots(pool)
            if capacity <= 0:
                continue  # every slot is busy: no need to look at the job's tasks
            limit = int(job.spec.get("maxParallelTasks", -1))
            running = job.tasks.count("running", "preparing") if limit != -1 else 0
            # The queue of runnable tasks, read a few at a time (dispatching changes it).
            cursor: tuple[int, str] | None = None
            while capacity > 0 and (limit == -1 or running < limit):
                batch = list(itertools.islice(job.tasks.runnable(cursor), 64))
                if not batch:
                    break
                cursor = batch[-1]
                for _, key in batch:
                    if capacity <= 0 or (limit != -1 and running >= limit):
                        break
                    if self._try_assign(job, job.tasks[key], pool, deps, capacity):
                        running += 1
                        capacity = self._free_slots(pool)

    def _release_held(self, job: Job, deps: Dependencies) -> None:
        """Move the job's held tasks whose dependencies are now met to its runnable
        queue; the others wait for the tasks they still need (``TaskTable.news``)."""
        table = job.tasks
        ranges = any(integer_id(k) is not None for k in table.woken())
        for key in table.news(ranges=ranges):
            task = table[key]
            if deps.met(task):
                table.release(key)
            else:
                ranged = bool(task.spec["dependsOn"].get("taskIdRanges"))
                table.wait_for(key, deps.unmet_ids(task), ranges=ranged)

    def _try_assign(self, job: Job, task: Task, pool: Pool, deps: Dependencies, capacity: int) -> bool:
        """Put ``task`` on a node of ``pool`` if one has the slots for it (and its
        dependencies are still met: a task it needs may have been reactivated)."""
        if task.state != "active" or task.proc is not None or task.node_key is not None:
            return False
        if task.required_slots > capacity:
            return False
        if task.spec.get("dependsOn") and not deps.met(task):
            job.tasks.hold(task.id.lower())
            return False
        nodes = [
            n
            for n in pool.nodes.values()
            if n.state in ("idle", "running") and pool.slots_per_node - n.used_slots() >= task.required_slots
        ]
        if not nodes:
            return False
        fill = (pool.spec.get("taskSchedulingPolicy") or {}).get("nodeFillType", "spread")
        nodes.sort(key=lambda n: n.used_slots(), reverse=(fill == "pack"))
        self._assign(job, task, pool, nodes[0])
        return True

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

    def _assign(self, job: Job, task: Task, pool: Pool, node: Node) -> None:
        """Put ``task`` on ``node`` (``running``, ``nodeInfo``) and have the runner run it."""
        key = f"{job.id}/{task.id}"
        node.running[key] = task.required_slots
        node.set_state("running")
        task.node_key = (pool.id, node.id)
        task.last_node = (pool.id, node.id)
        task.run_serial += 1
        task.node_info = {
            "affinityId": f"TVM:{node.id}",
            "nodeUrl": f"{self.state.endpoint}/pools/{pool.id}/nodes/{node.id}",
            "poolId": pool.id,
            "nodeId": node.id,
            "taskRootDirectory": f"workitems/{job.id}/job-1/{task.id}",
            "taskRootDirectoryUrl": f"{self.state.endpoint}/pools/{pool.id}/nodes/{node.id}/files/"
            f"workitems/{job.id}/job-1/{task.id}",
        }
        task.execution["startTime"] = iso(now())
        for k in ("endTime", "exitCode", "result", "failureInfo"):
            task.execution.pop(k, None)
        task.set_state("running")
        preempt = (not node.dedicated) and self.state.injector.preempt()
        self.runner.run_task(job, task, pool, node, preempt)
