"""Job schedules, through the unmodified BatchClient: add, get, exists, list, update,
replace, disable, enable, terminate, delete, and the jobs they create."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from azure.batch import BatchClient
from azure.batch import models as bm
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.core.rest import HttpRequest

from batch_transcode.testing import BatchEmulator

API = "api-version=2025-06-01"


def _spec(pool_id: str = "sched-pool") -> bm.BatchJobSpecification:
    return bm.BatchJobSpecification(
        pool_info=bm.BatchPoolInfo(pool_id=pool_id),
        all_tasks_complete_mode=bm.BatchAllTasksCompleteMode.TERMINATE_JOB,
    )


def _create(client: BatchClient, schedule_id: str, **schedule: Any) -> None:
    client.create_job_schedule(
        bm.BatchJobScheduleCreateOptions(
            id=schedule_id,
            schedule=bm.BatchJobScheduleConfiguration(**schedule),
            job_specification=_spec(),
            metadata=[bm.BatchMetadataItem(name="owner", value="tests")],
        )
    )


def _raw(client: BatchClient, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    try:
        response = client.send_request(HttpRequest(method, f"{path}?{API}", json=body))
    except HttpResponseError as exc:
        response = exc.response  # type: ignore[assignment]
    text = response.text()
    return response.status_code, json.loads(text) if text else None


@pytest.fixture
def pool(client: BatchClient, h: Any) -> str:
    client.create_pool(h.pool_options("sched-pool"))
    return "sched-pool"


def test_a_schedule_without_recurrence_makes_one_job_and_completes_with_it(
    client: BatchClient, emulator: BatchEmulator, pool: str, h: Any
) -> None:
    _create(client, "nightly")
    assert client.job_schedule_exists("nightly")
    # the service answers 404 (azure-batch 15.1 raises ResourceNotFoundError for it)
    assert _raw(client, "HEAD", "/jobschedules/weekly")[0] == 404
    assert h.wait_until(
        lambda: any(j.id == "nightly:job-1" for j in client.list_jobs_from_schedule("nightly"))
    )
    schedule = client.get_job_schedule("nightly")
    assert schedule.state == bm.BatchJobScheduleState.ACTIVE
    assert schedule.execution_info.recent_job.id == "nightly:job-1"
    assert schedule.execution_info.recent_job.url.endswith("/jobs/nightly:job-1")
    assert schedule.metadata[0].value == "tests"
    job = client.get_job("nightly:job-1")
    assert (
        job.pool_info.pool_id == pool
        and job.all_tasks_complete_mode == bm.BatchAllTasksCompleteMode.TERMINATE_JOB
    )
    # the job runs a task for real; when it completes, nothing more can run: the schedule completes
    client.create_task("nightly:job-1", bm.BatchTaskCreateOptions(id="t", command_line="/bin/sh -c true"))
    assert h.wait_until(
        lambda: client.get_job_schedule("nightly").state == bm.BatchJobScheduleState.COMPLETED
    )
    done = client.get_job_schedule("nightly")
    assert done.execution_info.end_time is not None and done.previous_state == bm.BatchJobScheduleState.ACTIVE
    assert [t.state for t in emulator.tasks("nightly:job-1")] == ["completed"]
    listed = list(client.list_job_schedules(filter="state eq 'completed'"))
    assert [s.id for s in listed] == ["nightly"]
    with pytest.raises(HttpResponseError) as refused:
        client.disable_job_schedule("nightly")
    assert refused.value.error is not None and refused.value.error.code == "JobScheduleCompleted"


def test_recurrence_waits_for_do_not_run_until_and_update_and_replace_change_it(
    client: BatchClient, pool: str, h: Any
) -> None:
    later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    _create(client, "hourly", do_not_run_until=later, recurrence_interval=dt.timedelta(hours=1))
    schedule = client.get_job_schedule("hourly")
    assert schedule.execution_info.next_run_time == later
    assert list(client.list_jobs_from_schedule("hourly")) == []
    # Update: run now; the next run is an interval after this one
    client.update_job_schedule(
        "hourly",
        bm.BatchJobScheduleUpdateOptions(
            schedule=bm.BatchJobScheduleConfiguration(recurrence_interval=dt.timedelta(hours=1))
        ),
    )
    assert h.wait_until(lambda: [j.id for j in client.list_jobs_from_schedule("hourly")] == ["hourly:job-1"])
    next_run = client.get_job_schedule("hourly").execution_info.next_run_time
    assert dt.timedelta(minutes=59) < next_run - dt.datetime.now(dt.UTC) <= dt.timedelta(hours=1)
    assert client.get_job_schedule("hourly").metadata[0].name == "owner"  # Update kept it
    # Replace: what it leaves out goes back to its default (no metadata)
    current = client.get_job_schedule("hourly")
    client.replace_job_schedule(
        "hourly",
        bm.BatchJobSchedule(schedule=current.schedule, job_specification=_spec()),
    )
    assert not client.get_job_schedule("hourly").metadata
    # the service's limits: a recurrence of at least a minute
    status, body = _raw(
        client, "PATCH", "/jobschedules/hourly", {"schedule": {"recurrenceInterval": "PT30S"}}
    )
    assert status == 400 and body["code"] == "InvalidPropertyValue"


def test_disable_enable_terminate_and_delete(
    client: BatchClient, emulator: BatchEmulator, pool: str, h: Any
) -> None:
    later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    _create(client, "weekly", do_not_run_until=later, recurrence_interval=dt.timedelta(days=7))
    with pytest.raises(ResourceExistsError) as exists:
        _create(client, "WEEKLY")  # ids are case-insensitive
    assert exists.value.error is not None and exists.value.error.code == "JobScheduleExists"
    client.disable_job_schedule("weekly")
    assert client.get_job_schedule("weekly").state == bm.BatchJobScheduleState.DISABLED
    client.enable_job_schedule("weekly")
    assert client.get_job_schedule("weekly").state == bm.BatchJobScheduleState.ACTIVE
    # a run now, then terminate: the schedule and its active job end
    client.update_job_schedule(
        "weekly",
        bm.BatchJobScheduleUpdateOptions(
            schedule=bm.BatchJobScheduleConfiguration(recurrence_interval=dt.timedelta(days=7))
        ),
    )
    assert h.wait_until(lambda: client.job_schedule_exists("weekly") and emulator.jobs() != [])
    client.begin_terminate_job_schedule("weekly", polling_interval=1).result()
    assert client.get_job_schedule("weekly").state == bm.BatchJobScheduleState.COMPLETED
    assert client.get_job("weekly:job-1").state == bm.BatchJobState.COMPLETED
    with pytest.raises(HttpResponseError) as again:
        client.begin_terminate_job_schedule("weekly", polling_interval=1).result()
    assert again.value.error is not None and again.value.error.code == "JobScheduleCompleted"
    # delete: the schedule and the jobs it made go
    client.begin_delete_job_schedule("weekly", polling_interval=1).result()
    with pytest.raises(ResourceNotFoundError) as gone:
        client.get_job_schedule("weekly")
    assert gone.value.error is not None and gone.value.error.code == "JobScheduleNotFound"
    assert emulator.jobs() == []


def test_bodies_are_checked_against_the_rest_spec(client: BatchClient, pool: str) -> None:
    spec = {"poolInfo": {"poolId": pool}}
    status, body = _raw(
        client, "POST", "/jobschedules", {"id": "s", "schedule": {}, "jobSpecification": spec, "x": 1}
    )
    assert status == 400 and body["code"] == "InvalidRequestBody"
    status, body = _raw(client, "POST", "/jobschedules", {"id": "s", "schedule": {}})  # no jobSpecification
    assert status == 400
    retired = {
        "autoPoolSpecification": {
            "poolLifetimeOption": "job",
            "pool": {
                "vmSize": "standard_d2s_v3",
                "virtualMachineConfiguration": {
                    "imageReference": {
                        "publisher": "canonical",
                        "offer": "0001-com-ubuntu-server-focal",
                        "sku": "20_04-lts",
                    },
                    "nodeAgentSKUId": "batch.node.ubuntu 20.04",
                },
            },
        }
    }
    status, body = _raw(
        client,
        "POST",
        "/jobschedules",
        {"id": "s", "schedule": {}, "jobSpecification": {"poolInfo": retired}},
    )
    assert status == 400 and body["code"] == "InvalidPropertyValue"
    status, body = _raw(client, "GET", "/jobschedules/nope")
    assert status == 404 and body["code"] == "JobScheduleNotFound"
    assert list(client.list_job_schedules()) == []


def test_a_run_past_its_start_window_is_lost_and_missed_runs_are_not_made_up(
    client: BatchClient, pool: str, h: Any
) -> None:
    past = dt.datetime.now(dt.UTC) - dt.timedelta(hours=3)
    _create(client, "missed", do_not_run_until=past, start_window=dt.timedelta(hours=1))
    assert h.wait_until(lambda: client.get_job_schedule("missed").state == bm.BatchJobScheduleState.COMPLETED)
    assert list(client.list_jobs_from_schedule("missed")) == []  # its one opportunity was lost
    _create(client, "catching-up", do_not_run_until=past, recurrence_interval=dt.timedelta(hours=1))
    assert h.wait_until(lambda: len(list(client.list_jobs_from_schedule("catching-up"))) == 1)
    next_run = client.get_job_schedule("catching-up").execution_info.next_run_time
    assert dt.timedelta(0) < next_run - dt.datetime.now(dt.UTC) <= dt.timedelta(hours=1)
    assert [j.id for j in client.list_jobs_from_schedule("catching-up")] == ["catching-up:job-1"]
