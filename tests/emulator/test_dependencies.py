"""Task dependencies, as "Create task dependencies to run tasks that depend on other tasks"
(https://learn.microsoft.com/azure/batch/batch-task-dependencies) and the REST reference
describe them, driven through the unmodified azure-batch client.

Tasks run real command lines on the emulated node; the order is read from the tasks'
``executionInfo`` times and from files the tasks write in the node's shared directory.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from azure.batch import BatchClient
from azure.batch import models as bm
from azure.batch.models._models import BatchJobTerminateOptions
from azure.core.exceptions import HttpResponseError
from azure.core.rest import HttpRequest

from batch_transcode.testing._batch_emulator import BatchEmulator

SHARED = "$AZ_BATCH_NODE_SHARED_DIR"


def _setup(client: BatchClient, h: Any, job_id: str = "j", **job: Any) -> None:
    """A pool of one node with four task slots, and a job on it that uses dependencies."""
    client.create_pool(h.pool_options(f"{job_id}-pool", task_slots_per_node=4))
    job.setdefault("uses_task_dependencies", True)
    client.create_job(
        bm.BatchJobCreateOptions(id=job_id, pool_info=bm.BatchPoolInfo(pool_id=f"{job_id}-pool"), **job)
    )


def _task(task_id: str, command: str, *after: str, **kwargs: Any) -> bm.BatchTaskCreateOptions:
    """A task running ``command`` in bash; it depends on the tasks ``after`` if any."""
    if after:
        kwargs["depends_on"] = bm.BatchTaskDependencies(task_ids=list(after))
    return bm.BatchTaskCreateOptions(id=task_id, command_line=f"/bin/bash -c '{command}'", **kwargs)


def _state(client: BatchClient, job_id: str, task_id: str) -> bm.BatchTaskState:
    state = client.get_task(job_id, task_id).state
    assert state is not None
    return state


def _error(exc: pytest.ExceptionInfo[HttpResponseError]) -> tuple[int | None, str | None]:
    return exc.value.status_code, exc.value.error.code if exc.value.error else None


def _satisfy_on(*codes: int, default: str | None = None) -> bm.ExitConditions:
    return bm.ExitConditions(
        exit_codes=[
            bm.ExitCodeMapping(code=c, exit_options=bm.ExitOptions(dependency_action=action))
            for c, action in ((c, "satisfy" if c else "block") for c in codes)
        ],
        default=bm.ExitOptions(dependency_action=default) if default else None,
    )


def test_task_runs_only_after_both_of_its_dependencies_succeed(
    client: BatchClient, emulator: BatchEmulator, h: Any
) -> None:
    _setup(client, h)
    # The dependent task comes first and names its parents in another casing: ids are
    # case-insensitive, and a dependency on a task not added yet waits for it.
    client.create_tasks(
        "j",
        [
            _task("flowers", f"cat {SHARED}/rain {SHARED}/sun", "RAIN", "Sun"),
            _task("rain", f"sleep 0.4; echo rain > {SHARED}/rain"),
            _task("sun", f"sleep 0.2; echo sun > {SHARED}/sun"),
        ],
    )
    h.wait_until(lambda: _state(client, "j", "rain") == bm.BatchTaskState.RUNNING)
    assert _state(client, "j", "flowers") == bm.BatchTaskState.ACTIVE
    assert emulator.wait_idle(30)

    flowers, rain, sun = (client.get_task("j", t).execution_info for t in ("flowers", "rain", "sun"))
    assert flowers is not None and rain is not None and sun is not None
    assert flowers.result == bm.BatchTaskExecutionResult.SUCCESS
    assert flowers.start_time is not None and rain.end_time is not None and sun.end_time is not None
    assert flowers.start_time >= max(rain.end_time, sun.end_time)
    assert b"".join(client.download_task_file("j", "flowers", "stdout.txt")) == b"rain\nsun\n"


def test_task_id_ranges_select_the_tasks_with_integer_ids(
    client: BatchClient, emulator: BatchEmulator, h: Any
) -> None:
    _setup(client, h)
    client.create_tasks(
        "j",
        [
            _task("1", f"sleep 0.2; echo 1 >> {SHARED}/done"),
            _task("02", f"sleep 0.2; echo 2 >> {SHARED}/done"),  # leading zeros do not count
            _task("3", f"sleep 0.2; echo 3 >> {SHARED}/done"),
            _task("3x", "exit 1"),  # not an integer id: outside every range, its failure blocks nothing
            bm.BatchTaskCreateOptions(
                id="merge",
                command_line=f"/bin/bash -c 'sort {SHARED}/done | tr -d \"\\n\"'",
                depends_on=bm.BatchTaskDependencies(task_id_ranges=[bm.BatchTaskIdRange(start=1, end=3)]),
            ),
            bm.BatchTaskCreateOptions(
                id="later",
                command_line="/bin/true",
                depends_on=bm.BatchTaskDependencies(
                    task_ids=["merge"], task_id_ranges=[bm.BatchTaskIdRange(start=2, end=4)]
                ),
            ),
        ],
    )
    assert emulator.wait_idle(30)
    assert client.get_task("j", "merge").execution_info.result == bm.BatchTaskExecutionResult.SUCCESS
    assert b"".join(client.download_task_file("j", "merge", "stdout.txt")) == b"123"
    # no task 4 yet: "later" waits for it (an emulator choice: the docs are silent)
    assert _state(client, "j", "later") == bm.BatchTaskState.ACTIVE
    client.create_task("j", _task("0004", "true"))
    assert emulator.wait_idle(30)
    assert client.get_task("j", "later").execution_info.result == bm.BatchTaskExecutionResult.SUCCESS


def test_failed_dependency_blocks_the_dependent_task_and_the_job_can_be_deleted(
    client: BatchClient, emulator: BatchEmulator, h: Any
) -> None:
    _setup(client, h)
    client.create_tasks(
        "j",
        [
            _task("parent", "exit 3", constraints=bm.BatchTaskConstraints(max_task_retry_count=1)),
            _task("child", "true", "parent"),
            _task("grandchild", "true", "child"),
        ],
    )
    # wait_idle does not wait for blocked tasks: nothing will ever run them
    assert emulator.wait_idle(30)
    parent = client.get_task("j", "parent").execution_info
    assert parent is not None and parent.exit_code == 3 and parent.retry_count == 1  # retries came first
    assert _state(client, "j", "child") == bm.BatchTaskState.ACTIVE
    assert client.get_task("j", "child").execution_info.start_time is None
    counts = client.get_job_task_counts("j").task_counts
    assert (counts.active, counts.running, counts.completed, counts.failed) == (2, 0, 1, 1)
    waiting = [t.id for t in client.list_tasks("j", filter="state eq 'active'")]
    assert sorted(waiting) == ["child", "grandchild"]

    client.begin_delete_job("j", polling_interval=0.05).result()
    assert [j.id for j in client.list_jobs()] == []


def test_exit_conditions_choose_whether_a_finished_task_satisfies_its_dependents(
    client: BatchClient, emulator: BatchEmulator, h: Any
) -> None:
    _setup(client, h)
    client.create_tasks(
        "j",
        [
            # a failure whose default exit options satisfy: the dependent runs
            _task("fails", "exit 3", exit_conditions=_satisfy_on(default="satisfy")),
            _task("after-fails", "true", "fails"),
            # an exit code mapped to satisfy
            _task("mapped", "exit 5", exit_conditions=_satisfy_on(5)),
            _task("after-mapped", "true", "mapped"),
            # exit code 0 listed as "block": success blocks (default "satisfy" is not used for 0)
            _task("zero", "exit 0", exit_conditions=_satisfy_on(0, default="satisfy")),
            _task("after-zero", "true", "zero"),
            # a missing program is a pre-processing error, which "default" covers
            bm.BatchTaskCreateOptions(
                id="unstartable",
                command_line="no-such-program",
                exit_conditions=bm.ExitConditions(default=bm.ExitOptions(dependency_action="block")),
            ),
            _task("after-unstartable", "true", "unstartable"),
        ],
    )
    assert emulator.wait_idle(30)
    ran = {t.id for t in client.list_tasks("j") if t.state == bm.BatchTaskState.COMPLETED}
    assert ran == {"fails", "after-fails", "mapped", "after-mapped", "zero", "unstartable"}
    assert client.get_task("j", "fails").execution_info.result == bm.BatchTaskExecutionResult.FAILURE
    assert _state(client, "j", "after-zero") == bm.BatchTaskState.ACTIVE
    assert _state(client, "j", "after-unstartable") == bm.BatchTaskState.ACTIVE


def test_dependencies_need_a_job_that_uses_them(client: BatchClient, h: Any) -> None:
    _setup(client, h, uses_task_dependencies=False)
    with pytest.raises(HttpResponseError) as plain:
        client.create_task("j", _task("child", "true", "parent"))
    assert _error(plain) == (400, "TaskDependenciesNotSpecifiedOnJob")
    with pytest.raises(HttpResponseError) as action:
        client.create_task("j", _task("t", "true", exit_conditions=_satisfy_on(default="satisfy")))
    assert _error(action) == (400, "InvalidPropertyValue")
    assert action.value.response is not None
    values = {v["key"]: v["value"] for v in action.value.response.json()["values"]}
    assert values["PropertyName"] == "dependencyAction"
    # in a task collection, the error is the task's own
    with pytest.raises(bm.CreateTasksError) as collection:
        client.create_tasks("j", [_task("ok", "true"), _task("child", "true", "ok")])
    failed = collection.value.failure_tasks
    assert [(f.task_id, f.error.code) for f in failed] == [("child", "TaskDependenciesNotSpecifiedOnJob")]


def test_task_ids_may_total_64000_characters(client: BatchClient, h: Any) -> None:
    _setup(client, h)
    ids = [f"{i:064d}" for i in range(1000)]  # 1000 ids of 64 characters: exactly 64,000
    client.create_task("j", _task("at-limit", "true", *ids))
    assert len(client.get_task("j", "at-limit").depends_on.task_ids) == 1000
    with pytest.raises(HttpResponseError) as too_long:
        client.create_task("j", _task("over", "true", *ids, "x"))
    assert _error(too_long) == (400, "TaskDependencyListTooLong")


def test_terminatejob_waits_for_the_dependent_task(
    client: BatchClient, emulator: BatchEmulator, h: Any
) -> None:
    _setup(client, h, all_tasks_complete_mode="terminatejob")
    client.create_tasks("j", [_task("first", "sleep 0.3"), _task("second", "sleep 0.3", "first")])
    h.wait_until(lambda: client.get_job("j").state == bm.BatchJobState.COMPLETED)
    second = client.get_task("j", "second").execution_info
    job = client.get_job("j")
    assert second is not None and second.end_time is not None and job.execution_info is not None
    assert second.result == bm.BatchTaskExecutionResult.SUCCESS
    assert job.execution_info.termination_reason == "AllTasksComplete"
    assert job.execution_info.end_time is not None and job.execution_info.end_time >= second.end_time

    # a blocked task is not complete: the job stays active until it is terminated
    _setup(client, h, "blocked", all_tasks_complete_mode="terminatejob")
    client.create_tasks("blocked", [_task("fails", "exit 1"), _task("waits", "true", "fails")])
    h.wait_until(lambda: _state(client, "blocked", "fails") == bm.BatchTaskState.COMPLETED)
    time.sleep(0.3)  # a few scheduler ticks, each of which could end the job
    assert client.get_job("blocked").state == bm.BatchJobState.ACTIVE
    reason = BatchJobTerminateOptions(termination_reason="UserTerminate")  # the client needs one
    client.begin_terminate_job("blocked", reason, polling_interval=0.05).result()
    assert client.get_job("blocked").state == bm.BatchJobState.COMPLETED
    assert _state(client, "blocked", "waits") == bm.BatchTaskState.ACTIVE


def test_deleting_a_task_that_satisfied_its_dependents_does_not_undo_it(
    client: BatchClient, emulator: BatchEmulator, h: Any
) -> None:
    # Azure/Batch issue 129 ("by design"): a re-created parent is not waited for
    _setup(client, h)
    client.create_task("j", _task("a", "true"))
    assert emulator.wait_idle(30)
    client.delete_task("j", "a")
    client.create_tasks("j", [_task("a", "sleep 5"), _task("b", "true", "a")])
    h.wait_until(lambda: _state(client, "j", "b") == bm.BatchTaskState.COMPLETED)
    assert _state(client, "j", "a") == bm.BatchTaskState.RUNNING


def _send(client: BatchClient, method: str, path: str, body: Any) -> tuple[int, Any]:
    request = HttpRequest(method, f"{path}?api-version=2025-06-01", json=body)
    try:
        response = client.send_request(request)
    except HttpResponseError as exc:
        if exc.response is None:
            raise
        response = exc.response  # type: ignore[assignment]
    text = response.text()
    return response.status_code, json.loads(text) if text else None


def test_uses_task_dependencies_is_fixed_when_the_job_is_created(client: BatchClient, h: Any) -> None:
    _setup(client, h)
    pool_info = {"poolId": "j-pool"}
    # Replace Job (PUT, a BatchJob body) ignores the read-only property
    status, _ = _send(client, "PUT", "/jobs/j", {"poolInfo": pool_info, "usesTaskDependencies": False})
    assert status == 200
    assert client.get_job("j").uses_task_dependencies is True
    # Update Job (PATCH) has no such property
    status, body = _send(client, "PATCH", "/jobs/j", {"usesTaskDependencies": False})
    assert (status, body["code"]) == (400, "InvalidRequestBody")
    client.create_task("j", _task("child", "true", "parent"))


def test_exit_options_job_action_defaults_to_terminate_for_a_failure(
    client: BatchClient, emulator: BatchEmulator, h: Any
) -> None:
    _setup(client, h, task_failure_mode="performexitoptionsjobaction")
    client.create_tasks("j", [_task("fails", "exit 2"), _task("waits", "true", "fails")])
    h.wait_until(lambda: client.get_job("j").state == bm.BatchJobState.COMPLETED)
    info = client.get_job("j").execution_info
    assert info is not None and info.termination_reason == "TaskFailed"
    assert _state(client, "j", "waits") == bm.BatchTaskState.ACTIVE
    # a jobAction needs a job whose onTaskFailure performs it
    _setup(client, h, "plain")
    none = bm.ExitConditions(default=bm.ExitOptions(job_action="none"))
    with pytest.raises(HttpResponseError) as refused:
        client.create_task("plain", _task("t", "true", exit_conditions=none))
    assert _error(refused) == (400, "InvalidPropertyValue")


def test_a_held_task_waits_through_a_failure_and_runs_once_its_parent_is_reactivated_and_succeeds(
    client: BatchClient, emulator: BatchEmulator, h: Any
) -> None:
    """A dependent task waits apart from the runnable ones: added before its parent, kept
    waiting when the parent fails (blocks), let through when the reactivated parent then
    succeeds; its sibling without dependencies runs at once meanwhile."""
    _setup(client, h)
    client.create_task("j", _task("child", "echo child", "parent"))
    client.create_task("j", _task("free", "echo free"))
    h.wait_until(lambda: _state(client, "j", "free") == bm.BatchTaskState.COMPLETED)
    assert _state(client, "j", "child") == bm.BatchTaskState.ACTIVE
    client.create_task("j", _task("parent", f"test -f {SHARED}/ready"))
    h.wait_until(lambda: _state(client, "j", "parent") == bm.BatchTaskState.COMPLETED)
    assert emulator.wait_idle(10)  # nothing can run: the child is blocked
    assert _state(client, "j", "child") == bm.BatchTaskState.ACTIVE
    client.create_task("j", _task("maker", f"touch {SHARED}/ready"))
    h.wait_until(lambda: _state(client, "j", "maker") == bm.BatchTaskState.COMPLETED)
    client.reactivate_task("j", "parent")
    h.wait_until(lambda: _state(client, "j", "child") == bm.BatchTaskState.COMPLETED)
    child, parent = (client.get_task("j", t).execution_info for t in ("child", "parent"))
    assert child is not None and parent is not None and parent.end_time is not None
    assert child.result == bm.BatchTaskExecutionResult.SUCCESS
    assert child.start_time is not None and child.start_time >= parent.end_time
    counts = client.get_job_task_counts("j").task_counts
    assert (counts.completed, counts.succeeded, counts.active) == (4, 4, 0)
