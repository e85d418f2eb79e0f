"""Task dependencies and exit conditions: what a completed task does to its job and to the
tasks that depend on it.

As Microsoft documents them ("Create task dependencies to run tasks that depend on other
tasks", https://learn.microsoft.com/azure/batch/batch-task-dependencies, and the REST
reference of ``BatchTaskDependencies``, ``BatchTaskIdRange`` and ``ExitOptions``,
https://learn.microsoft.com/rest/api/batchservice/tasks/create-task):

- a job allows dependencies only if it was created with ``usesTaskDependencies``; a task
  with ``dependsOn`` on another job is refused with ``TaskDependenciesNotSpecifiedOnJob``,
  and so is a task whose exit conditions set a ``dependencyAction`` (an invalid property
  value: Microsoft.Azure.Batch ``ExitOptions.DependencyAction``, "If the job's
  UsesTaskDependencies is false, you cannot add a task with this property set",
  https://learn.microsoft.com/dotnet/api/microsoft.azure.batch.exitoptions.dependencyaction);
- the ids in ``taskIds`` may total 64,000 characters; longer lists are refused with
  ``TaskDependencyListTooLong`` ("Batch status and error codes",
  https://learn.microsoft.com/rest/api/batchservice/batch-status-and-error-codes);
- a range (``start`` to ``end``, inclusive) selects the tasks whose ids are integers:
  1..10 selects ``3`` and ``7`` but not ``5flamingoes``; leading zeros do not count, so
  ``4``, ``04`` and ``004`` are all task 4 and the first of them to satisfy the
  dependency satisfies it;
- a dependent task stays ``active`` until every task it depends on has completed and
  satisfied it. A task satisfies its dependents when the ``dependencyAction`` of the exit
  condition it completed with says ``satisfy``; without one, success (exit code 0)
  satisfies and every failure blocks. A blocked dependent task is never scheduled
  ("If any of those Tasks fail and exhaust their retry counts, this Task will never be
  scheduled"), and stays ``active``.

The exit condition that applies (the ``ExitConditions`` reference): the mapping in
``exitCodes``, then ``exitCodeRanges``, for the exit code; ``preProcessingError`` when the
task could not start (a resource file or the program was missing); ``fileUploadError``
when an output file failed to upload, unless the exit code had a mapping (which takes
precedence); ``default`` for any other failure (a non-zero exit code without a mapping, a
pre-processing or upload error without its own entry, and, the emulator's reading,
a task ended by Terminate Task or by its ``maxWallClockTime``). Exit code 0 uses only a
mapping that lists it ("If you want non-default behavior on exit code 0, you must list it
explicitly"). The same choice gives the ``jobAction`` of a failed task when the job's
``onTaskFailure`` is ``performexitoptionsjobaction`` (default: ``terminate``); setting a
``jobAction`` on a job whose ``onTaskFailure`` is ``noaction`` is an invalid property value.

Where the documents are silent, the emulator chooses:

- a dependency on a task that does not exist (yet) waits for it: nothing refuses it, and a
  task collection added in parallel chunks can add a dependent task before its parent;
  each integer of a range likewise waits until some task with that number satisfies it;
- a range whose ``start`` is above its ``end`` selects nothing and is met;
- once a task has satisfied its dependents, deleting it does not undo that: a new task
  with the same id is not waited for (the service does this too, an issue its team
  labelled "by design": https://github.com/Azure/Batch/issues/129).
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable, Mapping, Set
from typing import Any, Literal, Protocol

from ._errors import BatchServiceError, invalid_value

JSON = dict[str, Any]


class _Task(Protocol):
    """What the rules read of a task (the model's ``Task``, which imports this module)."""

    @property
    def id(self) -> str: ...

    @property
    def spec(self) -> JSON: ...

    def satisfies_dependents(self) -> bool: ...


class _Job(Protocol):
    """What the rules read of a job (the model's ``Job``)."""

    @property
    def tasks(self) -> Mapping[str, _Task]: ...

    @property
    def satisfied_ids(self) -> Set[str]: ...


#: The combined length of the ids a task's ``taskIds`` may hold.
MAX_TASK_IDS_LENGTH = 64_000

#: How a task ended, for the exit conditions: with an exit code, before its process
#: started, with an output file upload error, or otherwise (ended by a request or a
#: time limit).
ExitCondition = Literal["exitCode", "preProcessingError", "fileUploadError", "other"]

_INTEGER_ID = re.compile(r"^-?[0-9]+$")


def _lower(value: Any) -> str:
    return str(value).lower()


def _set_options(exit_conditions: JSON, prop: str) -> Iterable[Any]:
    """The values of ``prop`` (``dependencyAction``, ``jobAction``) set anywhere in
    ``exit_conditions``."""
    options = [exit_conditions.get(k) for k in ("preProcessingError", "fileUploadError", "default")]
    for key in ("exitCodes", "exitCodeRanges"):
        options.extend(m.get("exitOptions") for m in exit_conditions.get(key) or [])
    for opt in options:
        if isinstance(opt, dict) and opt.get(prop) is not None:
            yield opt[prop]


def check_new_task(job_spec: JSON, spec: JSON) -> None:
    """Refuse a task ``spec`` whose dependencies or exit conditions ``job_spec`` does not
    allow, as Add Task does."""
    uses = bool(job_spec.get("usesTaskDependencies"))
    depends = spec.get("dependsOn")
    if depends is not None and not uses:
        raise BatchServiceError(
            400,
            "TaskDependenciesNotSpecifiedOnJob",
            "A task was specified as depending on other tasks, but the job did not specify that it "
            "would use task dependencies.",
        )
    exit_conditions = spec.get("exitConditions") or {}
    action = next(iter(_set_options(exit_conditions, "dependencyAction")), None)
    if action is not None and not uses:
        raise invalid_value(
            "dependencyAction",
            action,
            "dependencyAction can be set only on a task of a job with usesTaskDependencies.",
        )
    action = next(iter(_set_options(exit_conditions, "jobAction")), None)
    if action is not None and _lower(job_spec.get("onTaskFailure", "noaction")) == "noaction":
        raise invalid_value(
            "jobAction",
            action,
            "jobAction can be set only on a task of a job whose onTaskFailure is "
            "performExitOptionsJobAction.",
        )
    if depends:
        length = sum(len(str(i)) for i in depends.get("taskIds") or [])
        if length > MAX_TASK_IDS_LENGTH:
            raise BatchServiceError(
                400,
                "TaskDependencyListTooLong",
                "A task was specified as depending on other tasks, but the list of dependencies was "
                "too long to be stored.",
                {
                    "MaxLimit": str(MAX_TASK_IDS_LENGTH),
                    "Reason": f"The task ids in dependsOn.taskIds total {length} characters; "
                    "consider task id ranges instead.",
                },
            )


def exit_options(exit_conditions: JSON | None, exit_code: int | None, condition: ExitCondition) -> JSON:
    """The ``ExitOptions`` of ``exit_conditions`` that apply to a task that ended with
    ``condition`` (and ``exit_code``); ``{}`` when none does."""
    ec = exit_conditions or {}
    mapped: JSON | None = None
    if exit_code is not None and condition in ("exitCode", "fileUploadError"):
        for mapping in ec.get("exitCodes") or []:
            if mapping.get("code") == exit_code:
                mapped = mapping.get("exitOptions") or {}
                break
        else:
            for mapping in ec.get("exitCodeRanges") or []:
                if int(mapping.get("start", 0)) <= exit_code <= int(mapping.get("end", -1)):
                    mapped = mapping.get("exitOptions") or {}
                    break
    if mapped is not None:
        return mapped
    if condition == "exitCode" and exit_code == 0:
        return {}  # exit code 0 takes only an explicit mapping
    chosen = ec.get(condition) if condition in ("preProcessingError", "fileUploadError") else None
    options: JSON = chosen or ec.get("default") or {}
    return options


def dependency_action(spec: JSON, *, succeeded: bool, exit_code: int | None, condition: ExitCondition) -> str:
    """``"satisfy"`` or ``"block"``: what a task of ``spec`` that completed so does to the
    tasks that depend on it (the default: success satisfies, failure blocks)."""
    action = exit_options(spec.get("exitConditions"), exit_code, condition).get("dependencyAction")
    if action is None:
        return "satisfy" if succeeded else "block"
    return _lower(action)


def job_action(spec: JSON, *, exit_code: int | None, condition: ExitCondition) -> str:
    """``"none"``, ``"disable"`` or ``"terminate"``: what a failed task of ``spec`` does to its
    job when the job's ``onTaskFailure`` is ``performexitoptionsjobaction``."""
    action = exit_options(spec.get("exitConditions"), exit_code, condition).get("jobAction")
    return "terminate" if action is None else _lower(action)


def integer_id(task_id: str) -> int | None:
    """The number a task id stands for in a range (``"004"`` -> 4), or None."""
    return int(task_id) if _INTEGER_ID.match(task_id) else None


class Dependencies:
    """Which dependencies of the tasks of one job are met, for one look at the job.

    Build one per scheduling pass: the numbers that satisfied a range are gathered on
    first use, once, however many dependent tasks ask.
    """

    def __init__(self, job: _Job) -> None:
        self._job = job
        self._numbers: list[int] | None = None

    def _satisfied(self, key: str) -> bool:
        task = self._job.tasks.get(key)
        if task is not None and task.satisfies_dependents():
            return True
        return key in self._job.satisfied_ids

    def _satisfied_numbers(self) -> list[int]:
        if self._numbers is None:
            found = {
                n
                for t in self._job.tasks.values()
                if t.satisfies_dependents() and (n := integer_id(t.id)) is not None
            }
            found.update(n for key in self._job.satisfied_ids if (n := integer_id(key)) is not None)
            self._numbers = sorted(found)
        return self._numbers

    def unmet_ids(self, task: _Task) -> list[str]:
        """The lower-case ids in ``task``'s ``taskIds`` that have not satisfied it."""
        deps = task.spec.get("dependsOn") or {}
        return [key for i in deps.get("taskIds") or [] if not self._satisfied(key := _lower(i))]

    def met(self, task: _Task) -> bool:
        """Whether every task ``task`` depends on has satisfied it."""
        deps = task.spec.get("dependsOn")
        if not deps:
            return True
        if not all(self._satisfied(_lower(i)) for i in deps.get("taskIds") or []):
            return False
        for r in deps.get("taskIdRanges") or []:
            start, end = int(r["start"]), int(r["end"])
            if end < start:
                continue
            numbers = self._satisfied_numbers()
            have = bisect.bisect_right(numbers, end) - bisect.bisect_left(numbers, start)
            if have < end - start + 1:
                return False
        return True
