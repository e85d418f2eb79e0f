"""Start tasks and tasks, run for real on emulated nodes.

A node is a directory (see ``_executor``); its start task and its tasks run there as
processes, each watched by a worker thread, with the environment the service gives them
("Azure Batch runtime environment variables",
https://learn.microsoft.com/azure/batch/batch-compute-node-environment-variables).
The runner fetches resource files, launches the command line, enforces the task's
``maxWallClockTime``, uploads output files, and records the outcome on the task
(``executionInfo``: exit code, result, ``failureInfo``, retries and requeues) or on the node
(``startTaskInfo``), as the Azure Batch REST API reports them (Get Task,
https://learn.microsoft.com/rest/api/batchservice/tasks/get-task; Get Node,
https://learn.microsoft.com/rest/api/batchservice/nodes/get-node).

A failing exit code is retried up to ``maxTaskRetryCount`` times (-1: without limit) while
the job is active. A task whose node goes
away (pool deletion or shrink, job disabled with ``requeue``, Spot preemption) goes back
to ``active`` with its ``requeueCount`` raised.
"""

from __future__ import annotations

import copy
import logging
import os
import subprocess
import time
from pathlib import Path
from typing import Any

from batch_transcode._process import kill_process_group

from ._dependencies import ExitCondition, job_action
from ._executor import PreparationError, download_resource_files, launch, upload_output_files
from ._model import JSON, Job, Node, Pool, Task, iso, now
from ._odata import duration_seconds
from ._state import AccountState

LOG = logging.getLogger(__name__)

PREEMPT_AFTER = 0.15  # seconds into a run a preempted node goes away
PREEMPT_RECOVERY = 0.3  # seconds a preempted Spot node takes to come back
_FAILING_START_TASK = (
    "/bin/bash -c 'echo \"E: Unable to locate package ffmpeg (emulated start task failure)\" >&2; exit 100'"
)


def pool_identities(pool: Pool) -> list[str]:
    """ARM resource ids of the user-assigned identities of ``pool``."""
    identity = pool.spec.get("identity") or {}
    return [
        str(i.get("resourceId")) for i in identity.get("userAssignedIdentities") or [] if i.get("resourceId")
    ]


def _env_list(items: Any) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in items or []}


class _Interrupted(Exception):
    pass


class Runner:
    """Runs start tasks and tasks of the account ``state`` in worker threads."""

    def __init__(self, state: AccountState) -> None:
        self.state = state
        self._base_path = os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin")

    def _node_env(self, pool: Pool, node: Node) -> dict[str, str]:
        """What every process on the node sees: the node image first on PATH and the
        node-level ``AZ_BATCH_*`` variables."""
        root = node.root
        return {
            "PATH": f"{root / 'bin'}{os.pathsep}{self._base_path}",
            "HOME": str(root),
            "LANG": "C.UTF-8",
            "AZ_BATCH_ACCOUNT_NAME": self.state.account,
            "AZ_BATCH_ACCOUNT_URL": self.state.endpoint,
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

    def start_node(self, pool: Pool, node: Node) -> None:
        """A node that just started: run the pool's start task on it, or make it idle."""
        start = pool.spec.get("startTask")
        if not start:
            node.set_state("idle")
            self.state.changed.notify_all()
            return
        wait = bool(start.get("waitForSuccess", True))
        node.set_state("waitingforstarttask" if wait else "idle")
        node.start_task_info = {"state": "running", "startTime": iso(now()), "retryCount": 0}
        spec = copy.deepcopy(start)
        env = self._node_env(pool, node)
        self.state.spawn(lambda: self._run_start_task(pool, node, spec, env, wait), f"start-task-{node.id}")

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
                download_resource_files(
                    spec.get("resourceFiles") or [], wd, self.state.node_storage, pool_identities(pool)
                )
                command = spec["commandLine"]
                if self.state.injector.faults.start_task_failure:
                    command = _FAILING_START_TASK
                with self.state.lock:
                    if self.state.stopping.is_set() or pool.state == "deleting":
                        return
                    proc = launch(
                        command, cwd=wd, env=env, stdout=startup / "stdout.txt", stderr=startup / "stderr.txt"
                    )
                    node.start_proc = proc
                exit_code = proc.wait()
            except PreparationError as exc:
                failure = (exc.category, exc.code, exc.message)
            with self.state.lock:
                node.start_proc = None
                if self.state.stopping.is_set() or pool.nodes.get(node.id) is not node:
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
                self.state.changed.notify_all()
                return

    def run_task(self, job: Job, task: Task, pool: Pool, node: Node, preempt: bool) -> None:
        """Run a task the scheduler just assigned to ``node``, in a worker thread. With
        ``preempt`` the (Spot) node is preempted shortly after the task starts."""
        task_dir = node.root / "workitems" / job.id / "job-1" / task.id
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
        self.state.spawn(
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
            download_resource_files(
                spec.get("resourceFiles") or [], wd, self.state.node_storage, pool_identities(pool)
            )
            with self.state.lock:
                if task.kill_reason is not None or self.state.stopping.is_set():
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
                    with self.state.lock:
                        task.kill_reason = task.kill_reason or "preempt"
                    kill_process_group(proc)
                if wall is not None and elapsed >= wall:
                    timed_out = True
                    kill_process_group(proc)
            if preempt:
                with self.state.lock:
                    task.kill_reason = task.kill_reason or "preempt"
        except _Interrupted:
            pass
        except PreparationError as exc:
            failure = (exc.category, exc.code, exc.message)
        with self.state.lock:
            task.proc = None
            reason = task.kill_reason
            task.kill_reason = None
            task.node_key = None
            if reason in ("shutdown", "delete", "requeue", "preempt") or self.state.stopping.is_set():
                _free_slots(node, f"{job.id}/{task.id}")
            if reason in ("shutdown", "delete") or self.state.stopping.is_set():
                self.state.changed.notify_all()
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
                self.state.changed.notify_all()
                return
        succeeded = failure is None and exit_code == 0 and reason is None and not timed_out
        upload_failed = False
        if failure is None and reason is None:
            try:
                upload_output_files(
                    spec.get("outputFiles") or [],
                    wd,
                    succeeded=succeeded,
                    storage=self.state.node_storage,
                    pool_identities=pool_identities(pool),
                )
            except PreparationError as exc:
                failure = (exc.category, exc.code, exc.message)
                succeeded = False
                upload_failed = True
        with self.state.lock:
            # The task held its slots until its output files were uploaded: the upload is
            # part of the task, and its endTime comes after it.
            _free_slots(node, f"{job.id}/{task.id}")
            node.total_run += 1
            if succeeded:
                node.total_succeeded += 1
            node.recent = [
                *node.recent,
                {
                    "taskUrl": f"{self.state.endpoint}/jobs/{job.id}/tasks/{task.id}",
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
                self.state.changed.notify_all()
                return
            condition: ExitCondition
            if reason == "terminate" or timed_out:
                condition = "other"
            elif exit_code is None:
                condition = "preProcessingError"  # a resource file or the program was missing
            elif upload_failed:
                condition = "fileUploadError"
            else:
                condition = "exitCode"
            task.complete(result="success" if succeeded else "failure", failure=failure, condition=condition)
            on_failure = str(job.spec.get("onTaskFailure", "noaction")).lower()
            if failure is not None and on_failure == "performexitoptionsjobaction" and job.state == "active":
                action = job_action(task.spec, exit_code=exit_code, condition=condition)
                if action == "terminate":
                    self.state.terminate_job(job, "TaskFailed")
                elif action == "disable":
                    self.state.disable_job(job, "requeue")
            self.state.changed.notify_all()


def _free_slots(node: Node, key: str) -> None:
    """The task ``key`` (``job/task``) gives its slots back; a node with none busy is idle."""
    node.running.pop(key, None)
    if node.state == "running" and not node.running:
        node.set_state("idle")
