"""Tasks and start tasks run for real; files move through Azurite with SAS URLs."""

from __future__ import annotations

from typing import Any

from azure.batch import BatchClient
from azure.batch import models as bm

from batch_transcode.testing._batch_emulator import BatchEmulator, Faults


def _job(client: BatchClient, job_id: str, pool_id: str, **kwargs: Any) -> None:
    client.create_job(
        bm.BatchJobCreateOptions(id=job_id, pool_info=bm.BatchPoolInfo(pool_id=pool_id), **kwargs)
    )


def _read(client: BatchClient, job_id: str, task_id: str, name: str) -> str:
    return b"".join(client.download_task_file(job_id, task_id, name)).decode()


def test_task_with_resource_and_output_files(
    client: BatchClient, emulator: BatchEmulator, azurite: Any, h: Any
) -> None:
    svc = azurite.service()
    svc.create_container("inputs")
    svc.create_container("outputs")
    inputs = svc.get_container_client("inputs")
    inputs.upload_blob("one.txt", b"first input\n")
    inputs.upload_blob("batch/a.txt", b"A\n")
    inputs.upload_blob("batch/sub/b.txt", b"B\n")
    read_sas = azurite.container_sas_url("inputs", read=True, listing=True)
    base, _, sas = read_sas.partition("?")
    write_sas = azurite.container_sas_url("outputs", write=True)

    client.create_pool(h.pool_options("exec", task_slots_per_node=2))
    _job(client, "j", "exec")
    task = bm.BatchTaskCreateOptions(
        id="t1",
        command_line=(
            "/bin/bash -c 'mkdir -p out/deep && cat one.txt > out/copy.txt && "
            "cat in/batch/a.txt in/batch/sub/b.txt > out/deep/ab.txt && "
            "echo job=$AZ_BATCH_JOB_ID task=$AZ_BATCH_TASK_ID custom=$CUSTOM && "
            'test "$PWD" = "$AZ_BATCH_TASK_WORKING_DIR" && echo to-stderr >&2\''
        ),
        resource_files=[
            bm.ResourceFile(http_url=f"{base}/one.txt?{sas}", file_path="one.txt"),
            bm.ResourceFile(storage_container_url=read_sas, blob_prefix="batch/", file_path="in"),
        ],
        environment_settings=[bm.EnvironmentSetting(name="CUSTOM", value="x y")],
        output_files=[
            bm.OutputFile(
                file_pattern="out/**/*.txt",
                destination=bm.OutputFileDestination(
                    container=bm.OutputFileBlobContainerDestination(container_url=write_sas, path="results")
                ),
                upload_options=bm.OutputFileUploadConfiguration(
                    upload_condition=bm.OutputFileUploadCondition.TASK_SUCCESS
                ),
            ),
            bm.OutputFile(
                file_pattern="../std*.txt",
                destination=bm.OutputFileDestination(
                    container=bm.OutputFileBlobContainerDestination(container_url=write_sas, path="logs/t1")
                ),
                upload_options=bm.OutputFileUploadConfiguration(
                    upload_condition=bm.OutputFileUploadCondition.TASK_COMPLETION
                ),
            ),
            bm.OutputFile(
                file_pattern="out/copy.txt",
                destination=bm.OutputFileDestination(
                    container=bm.OutputFileBlobContainerDestination(
                        container_url=write_sas, path="exact/name.txt"
                    )
                ),
                upload_options=bm.OutputFileUploadConfiguration(
                    upload_condition=bm.OutputFileUploadCondition.TASK_FAILURE
                ),
            ),
        ],
    )
    client.create_task("j", task)
    assert emulator.wait_idle(30)
    done = client.get_task("j", "t1")
    assert done.state == bm.BatchTaskState.COMPLETED, _read(client, "j", "t1", "stderr.txt")
    assert done.execution_info.exit_code == 0
    assert done.execution_info.result == bm.BatchTaskExecutionResult.SUCCESS
    assert done.node_info is not None and done.node_info.pool_id == "exec"
    assert _read(client, "j", "t1", "stdout.txt") == "job=j task=t1 custom=x y\n"
    assert _read(client, "j", "t1", "stderr.txt") == "to-stderr\n"
    assert _read(client, "j", "t1", "wd/out/deep/ab.txt") == "A\nB\n"

    names = sorted(b.name for b in svc.get_container_client("outputs").list_blobs())
    assert names == ["logs/t1/stderr.txt", "logs/t1/stdout.txt", "results/copy.txt", "results/deep/ab.txt"]
    outputs = svc.get_container_client("outputs")
    assert outputs.download_blob("results/copy.txt").readall() == b"first input\n"


def test_apt_start_task_shim_and_ffmpeg(client: BatchClient, emulator: BatchEmulator, h: Any) -> None:
    start = bm.BatchStartTask(
        command_line=(
            '/bin/bash -c "sudo apt-get update && sudo apt-get install -y ffmpeg && ffmpeg -version"'
        ),
        user_identity=bm.UserIdentity(
            auto_user=bm.AutoUserSpecification(
                scope=bm.AutoUserScope.POOL, elevation_level=bm.ElevationLevel.ADMIN
            )
        ),
        wait_for_success=True,
    )
    client.create_pool(h.pool_options("apt", start_task=start))
    h.wait_until(lambda: [n.state for n in client.list_nodes("apt")] == [bm.BatchNodeState.IDLE])
    node = next(iter(client.list_nodes("apt")))
    assert node.start_task_info is not None and node.start_task_info.exit_code == 0
    out = b"".join(client.download_node_file("apt", node.id, "startup/stdout.txt")).decode()
    assert "ffmpeg version" in out


def test_start_task_failure_fault(client: BatchClient, emulator: BatchEmulator, h: Any) -> None:
    emulator.set_faults(Faults(start_task_failure=True))
    client.create_pool(
        h.pool_options("bad", start_task=bm.BatchStartTask(command_line="/bin/true", wait_for_success=True))
    )
    h.wait_until(lambda: [n.state for n in client.list_nodes("bad")] == [bm.BatchNodeState.START_TASK_FAILED])
    node = next(iter(client.list_nodes("bad")))
    info = node.start_task_info
    assert info is not None and info.exit_code != 0 and info.result == bm.BatchTaskExecutionResult.FAILURE
    assert info.failure_info is not None and info.failure_info.code == "FailureExitCode"
    stderr = b"".join(client.download_node_file("bad", node.id, "startup/stderr.txt")).decode()
    assert "Unable to locate package" in stderr


def test_allocation_failure_fault(client: BatchClient, emulator: BatchEmulator, h: Any) -> None:
    emulator.set_faults(Faults(allocation_failure=True, allocation_failure_code="AccountCoreQuotaReached"))
    client.create_pool(h.pool_options("nocores", target_dedicated_nodes=3))
    h.wait_until(lambda: client.get_pool("nocores").allocation_state == bm.AllocationState.STEADY)
    pool = client.get_pool("nocores")
    assert pool.current_dedicated_nodes == 0
    assert pool.resize_errors and pool.resize_errors[0].code == "AccountCoreQuotaReached"
    assert list(client.list_nodes("nocores")) == []


def test_preempted_task_is_requeued_then_succeeds(
    client: BatchClient, emulator: BatchEmulator, h: Any
) -> None:
    emulator.set_faults(Faults(preempt_rate=1.0))
    client.create_pool(h.pool_options("spot", target_dedicated_nodes=0, target_low_priority_nodes=1))
    _job(client, "j", "spot")
    client.create_task("j", bm.BatchTaskCreateOptions(id="t", command_line="sleep 1"))
    h.wait_until(lambda: emulator.tasks("j")[0].requeue_count >= 1)
    emulator.set_faults(Faults())
    assert emulator.wait_idle(30)
    task = client.get_task("j", "t")
    assert task.state == bm.BatchTaskState.COMPLETED
    assert task.execution_info.result == bm.BatchTaskExecutionResult.SUCCESS
    assert task.execution_info.requeue_count >= 1 and task.execution_info.retry_count == 0


def test_retries_then_failure_info(client: BatchClient, emulator: BatchEmulator, h: Any) -> None:
    client.create_pool(h.pool_options("retry"))
    _job(client, "j", "retry")
    client.create_task(
        "j",
        bm.BatchTaskCreateOptions(
            id="flaky",
            command_line=(
                "/bin/bash -c 'n=$(cat ../../count 2>/dev/null || echo 0); "
                "echo $((n+1)) > ../../count; [ $n -ge 2 ]'"
            ),
            constraints=bm.BatchTaskConstraints(max_task_retry_count=3),
        ),
    )
    client.create_task(
        "j",
        bm.BatchTaskCreateOptions(
            id="broken",
            command_line="/bin/bash -c 'exit 3'",
            constraints=bm.BatchTaskConstraints(max_task_retry_count=1),
        ),
    )
    client.create_task(
        "j",
        bm.BatchTaskCreateOptions(
            id="slow",
            command_line="sleep 30",
            constraints=bm.BatchTaskConstraints(max_wall_clock_time="PT0.3S"),
        ),
    )
    client.create_task("j", bm.BatchTaskCreateOptions(id="missing", command_line="no-such-program --x"))
    assert emulator.wait_idle(30)
    flaky = client.get_task("j", "flaky")
    assert flaky.execution_info.result == bm.BatchTaskExecutionResult.SUCCESS
    assert flaky.execution_info.retry_count == 2
    broken = client.get_task("j", "broken")
    assert broken.execution_info.exit_code == 3 and broken.execution_info.retry_count == 1
    assert broken.execution_info.failure_info.category == bm.BatchErrorSourceCategory.USER_ERROR
    assert broken.execution_info.failure_info.code == "FailureExitCode"
    slow = client.get_task("j", "slow")
    assert slow.execution_info.failure_info.code == "MaxWallClockTimeExpiry"
    missing = client.get_task("j", "missing")
    assert missing.execution_info.failure_info.code == "CommandProgramNotFound"
    counts = client.get_job_task_counts("j").task_counts
    assert (counts.completed, counts.succeeded, counts.failed) == (4, 1, 3)


def test_auto_pool_and_terminate_on_completion(client: BatchClient, emulator: BatchEmulator, h: Any) -> None:
    spec = bm.BatchAutoPoolSpecification(
        auto_pool_id_prefix="auto",
        pool_lifetime_option=bm.BatchPoolLifetimeOption.JOB,
        pool=bm.BatchPoolSpecification(
            vm_size="standard_d2s_v3", virtual_machine_configuration=h.vm, target_dedicated_nodes=1
        ),
    )
    client.create_job(
        bm.BatchJobCreateOptions(
            id="aj",
            pool_info=bm.BatchPoolInfo(auto_pool_specification=spec),
            all_tasks_complete_mode=bm.BatchAllTasksCompleteMode.TERMINATE_JOB,
        )
    )
    pool_id = client.get_job("aj").execution_info.pool_id
    assert pool_id.startswith("auto_")
    client.create_tasks(
        "aj", [bm.BatchTaskCreateOptions(id=f"t{i}", command_line="/bin/true") for i in range(3)]
    )
    h.wait_until(lambda: client.get_job("aj").state == bm.BatchJobState.COMPLETED)
    assert client.get_job("aj").execution_info.termination_reason == "AllTasksComplete"
    h.wait_until(lambda: not emulator.pools())


def test_job_max_wall_clock(client: BatchClient, emulator: BatchEmulator, h: Any) -> None:
    client.create_pool(h.pool_options("wall"))
    _job(client, "j", "wall", constraints=bm.BatchJobConstraints(max_wall_clock_time="PT0.5S"))
    client.create_task("j", bm.BatchTaskCreateOptions(id="t", command_line="sleep 30"))
    h.wait_until(lambda: client.get_job("j").state == bm.BatchJobState.COMPLETED)
    assert client.get_job("j").execution_info.termination_reason == "MaxWallClockTimeExpiry"


def test_stop_kills_processes(tmp_path: Any, h: Any) -> None:
    import os

    emu = BatchEmulator(workdir=tmp_path / "b")
    with emu:
        c = h.make_client(emu)
        c.create_pool(h.pool_options("p"))
        _job(c, "j", "p")
        c.create_task(
            "j", bm.BatchTaskCreateOptions(id="t", command_line="/bin/bash -c 'echo $$ > ../pid; sleep 60'")
        )
        nodes = tmp_path / "b" / "nodes" / "p"

        def pid_text() -> str:
            # The node's folder appears once the scheduler has brought the node up.
            for node in nodes.iterdir() if nodes.is_dir() else ():
                pid_file = node / "workitems" / "j" / "job-1" / "t" / "pid"
                if pid_file.exists():
                    return pid_file.read_text().strip()
            return ""

        h.wait_until(lambda: pid_text() != "")
        pid = int(pid_text())
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return
    raise AssertionError(f"task process {pid} survived stop()")
