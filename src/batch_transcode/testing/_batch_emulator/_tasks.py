"""Task operations: the ``Tasks_*`` operationIds.

:class:`TaskOperations` adds tasks (one, or a collection of up to 100), reads, lists,
terminates, reactivates and deletes them, and lists and reads the files in a task's
directory on its node, as in the Azure Batch REST API reference, Tasks group
(https://learn.microsoft.com/rest/api/batchservice/tasks; the collection limit is in
Create Task Collection, https://learn.microsoft.com/rest/api/batchservice/tasks/create-task-collection).
Running tasks is the scheduler's and the runner's work; which tasks may run once their
dependencies are met, and which dependencies a task may name, is ``_dependencies``.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from pathlib import Path

from batch_transcode._process import kill_process_group

from ._dependencies import check_new_task
from ._errors import BatchServiceError, invalid_value
from ._model import JSON, Job, Task, iso
from ._odata import Narrowing, duration_seconds, narrowing, parse_filter
from ._rest import Call, FileOperations, Reply, new_id
from ._task_table import TaskTable

MAX_TASKS_PER_COLLECTION = 100


class TaskOperations(FileOperations):
    """``Tasks_*``: tasks and their files."""

    op_Tasks_GetTaskFile = FileOperations.get_file
    op_Tasks_GetTaskFileProperties = FileOperations.get_file_properties
    op_Tasks_DeleteTaskFile = FileOperations.delete_file
    op_Tasks_ListTaskFiles = FileOperations.list_files

    def _add_task(self, job: Job, spec: JSON) -> Task:
        task_id = new_id(spec.get("id"), job.tasks, "Task")
        constraints = spec.get("constraints") or {}
        for prop in ("maxWallClockTime", "retentionTime"):
            if prop in constraints:
                duration_seconds(constraints[prop], f"constraints.{prop}")
        pool = self.state.pools.get(job.pool_id.lower())
        slots = int(spec.get("requiredSlots", 1))
        if slots < 1 or (pool is not None and slots > pool.slots_per_node):
            raise invalid_value(
                "requiredSlots",
                slots,
                "requiredSlots must be at least 1 and at most the pool's taskSlotsPerNode.",
            )
        check_new_task(job.spec, spec)
        task = Task(id=task_id, job_id=job.id, spec=copy.deepcopy(spec))
        job.tasks.add(task)
        task.table = job.tasks
        return task

    def _job_for_add(self, job_id: str) -> Job:
        job = self.state.writable_job(job_id)
        if job.state == "completed":
            raise BatchServiceError(409, "JobCompleted", "The specified job is already in a completed state.")
        if job.state == "terminating":
            raise BatchServiceError(409, "JobBeingTerminated", "The specified job is being terminated.")
        return job

    def op_Tasks_CreateTask(self, call: Call) -> Reply:
        with self.state.lock:
            job = self._job_for_add(call.params["jobId"])
            task = self._add_task(job, call.body)
            self.state.changed.notify_all()
            return self._created(task)

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
        with self.state.lock:
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
                        "location": f"{self.state.endpoint}/jobs/{job.id}/tasks/{task.id}",
                    }
                )
            self.state.changed.notify_all()
        return Reply(
            200, {"odata.metadata": f"{self.state.endpoint}/$metadata#taskaddresult", "value": results}
        )

    def op_Tasks_GetTask(self, call: Call) -> Reply:
        with self.state.lock:
            job = self.state.job(call.params["jobId"])
            task = self.state.task(job, call.params["taskId"])
            doc = self._element(call, task.to_json(self.state.endpoint, job), "tasks")
            return self._reply(200, task, doc)

    def op_Tasks_ListTasks(self, call: Call) -> Reply:
        with self.state.lock:
            job = self.state.job(call.params["jobId"])
            after, page = self._paging(call)
            text = call.query.get("$filter")
            predicate = parse_filter(text)
            chunk: list[str] = []
            more = False
            for key in _candidates(job.tasks, narrowing(text), after, page):
                if text and not predicate(job.tasks[key].filter_view(job)):
                    continue
                if len(chunk) == page:
                    more = True
                    break
                chunk.append(key)
            docs = [job.tasks[key].to_json(self.state.endpoint, job) for key in chunk]
            last = chunk[-1] if more else None
            return self._page_reply(call, docs, last, "tasks", f"/jobs/{job.id}/tasks")

    def op_Tasks_DeleteTask(self, call: Call) -> Reply:
        with self.state.lock:
            job = self.state.writable_job(call.params["jobId"])
            task = self.state.task(job, call.params["taskId"])
            if task.proc is not None:
                task.kill_reason = "delete"
                kill_process_group(task.proc)
            if task.satisfies_dependents():
                job.satisfied_ids.add(task.id.lower())  # see _dependencies: deleting does not undo it
            job.tasks.remove(task.id.lower())
            task.table = None
            self.state.changed.notify_all()
            return Reply(200, None)

    def op_Tasks_TerminateTask(self, call: Call) -> Reply:
        with self.state.lock:
            job = self.state.writable_job(call.params["jobId"])
            task = self.state.task(job, call.params["taskId"])
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
                    condition="other",
                )
            return self._reply(204, task)

    def op_Tasks_ReactivateTask(self, call: Call) -> Reply:
        with self.state.lock:
            job = self.state.writable_job(call.params["jobId"])
            task = self.state.task(job, call.params["taskId"])
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
            task.dependency_action = None
            task.set_state("active")
            self.state.changed.notify_all()
            return self._reply(204, task)

    def _task_dir(self, job: Job, task: Task) -> Path:
        if task.last_node is None:
            raise BatchServiceError(
                409,
                "OperationInvalidForCurrentState",
                "The specified operation is not valid for the current state of the resource.",
                {"Reason": "The task has not been scheduled on a node yet."},
            )
        pool_id, node_id = task.last_node
        return self.state.node_root(pool_id, node_id) / "workitems" / job.id / "job-1" / task.id

    def _files(self, call: Call) -> tuple[Path, str]:
        job = self.state.job(call.params["jobId"])
        task = self.state.task(job, call.params["taskId"])
        return self._task_dir(job, task), f"/jobs/{job.id}/tasks/{task.id}/files"


def _candidates(tasks: TaskTable[Task], narrow: Narrowing, after: str | None, page: int) -> Iterable[str]:
    """The keys after ``after``, in order, of a superset of the tasks a filter narrowed so
    matches: the tasks of its state, or those that entered a state since its instant when
    they are few (sorting them then costs less than walking the state's tasks in order
    until a page is full)."""
    if narrow.since is not None:
        states = [narrow.state] if narrow.state is not None else tasks.states()
        scope = tasks.count(*states)
        recent: list[str] = []
        for state in states:
            recent.extend(tasks.entered_since(state, narrow.since))
            if 4 * len(recent) > scope and len(recent) > page:
                break  # most of them: walk in order instead
        else:
            return sorted(k for k in set(recent) if after is None or k > after)
    return tasks.ids(narrow.state, after)
