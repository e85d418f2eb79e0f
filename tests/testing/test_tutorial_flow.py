"""The Azure Batch ffmpeg tutorial's flow, with only the unmodified Azure clients.

OfflineAzure starts Azurite and the Batch emulator; everything else is what the
tutorial (batch-python-ffmpeg-tutorial) does: containers, upload, SAS URLs, a pool
whose start task installs ffmpeg with apt, a job, one task per file with a resource
file and an output file, wait, then check the MP3s in storage.
"""

from __future__ import annotations

import datetime as dt
import subprocess
from pathlib import Path

import pytest
from azure.batch import BatchClient
from azure.batch import models as bm
from azure.core.credentials import AzureNamedKeyCredential
from azure.storage.blob import (
    BlobSasPermissions,
    BlobServiceClient,
    ContainerSasPermissions,
    generate_blob_sas,
    generate_container_sas,
)

from batch_transcode.testing import OfflineAzure
from helpers import NOTHING_LEFT, MediaFactory, wait_until

pytestmark = pytest.mark.azure


def test_tutorial_flow(tmp_path: Path, make_media: MediaFactory, ffmpeg_exe: str) -> None:
    names = ["LowPriVMs-1.mp4", "LowPriVMs-2.mp4", "LowPriVMs-3.mp4"]
    inputs = [make_media(tmp_path / "InputFiles" / n) for n in names]
    with OfflineAzure() as oa:
        env = oa.env
        blob = BlobServiceClient.from_connection_string(env["AZURE_STORAGE_CONNECTION_STRING"], retry_total=1)
        batch = BatchClient(
            env["AZURE_BATCH_ENDPOINT"],
            AzureNamedKeyCredential(env["AZURE_BATCH_ACCOUNT"], env["AZURE_BATCH_ACCESS_KEY"]),
        )
        with blob, batch:
            account, key = blob.account_name or "", blob.credential.account_key
            expiry = dt.datetime.now(dt.UTC) + dt.timedelta(hours=2)

            blob.create_container("input")
            blob.create_container("output")
            input_files = []
            for path in inputs:
                blob.get_blob_client("input", path.name).upload_blob(path.read_bytes())
                sas = generate_blob_sas(
                    account, "input", path.name, account_key=key,
                    permission=BlobSasPermissions(read=True), expiry=expiry,
                )  # fmt: skip
                url = f"{blob.get_blob_client('input', path.name).url}?{sas}"
                input_files.append(bm.ResourceFile(http_url=url, file_path=path.name))
            out_sas = generate_container_sas(
                account, "output", account_key=key,
                permission=ContainerSasPermissions(write=True), expiry=expiry,
            )  # fmt: skip
            output_container_url = f"{blob.get_container_client('output').url}?{out_sas}"

            batch.create_pool(
                bm.BatchPoolCreateOptions(
                    id="LinuxFfmpegPool",
                    vm_size="STANDARD_A1_v2",
                    virtual_machine_configuration=bm.VirtualMachineConfiguration(
                        image_reference=bm.BatchVmImageReference(
                            publisher="canonical",
                            offer="ubuntu-24_04-lts",
                            sku="server-gen1",
                            version="latest",
                        ),
                        node_agent_sku_id="batch.node.ubuntu 24.04",
                    ),
                    target_dedicated_nodes=1,
                    target_low_priority_nodes=1,
                    start_task=bm.BatchStartTask(
                        command_line='/bin/bash -c "apt-get update && apt-get install -y ffmpeg"',
                        wait_for_success=True,
                        user_identity=bm.UserIdentity(
                            auto_user=bm.AutoUserSpecification(
                                scope=bm.AutoUserScope.POOL, elevation_level=bm.ElevationLevel.ADMIN
                            )
                        ),
                    ),
                )
            )
            batch.create_job(
                bm.BatchJobCreateOptions(
                    id="LinuxFfmpegJob", pool_info=bm.BatchPoolInfo(pool_id="LinuxFfmpegPool")
                )
            )
            tasks = []
            for idx, rf in enumerate(input_files):
                output_name = Path(rf.file_path or "").stem + ".mp3"
                command = f'/bin/bash -c "ffmpeg -i {rf.file_path} {output_name}"'
                tasks.append(
                    bm.BatchTaskCreateOptions(
                        id=f"Task{idx}",
                        command_line=command,
                        resource_files=[rf],
                        output_files=[
                            bm.OutputFile(
                                file_pattern=output_name,
                                destination=bm.OutputFileDestination(
                                    container=bm.OutputFileBlobContainerDestination(
                                        container_url=output_container_url
                                    )
                                ),
                                upload_options=bm.OutputFileUploadConfiguration(
                                    upload_condition=bm.OutputFileUploadCondition.TASK_SUCCESS
                                ),
                            )
                        ],
                    )
                )
            batch.create_tasks("LinuxFfmpegJob", tasks)

            def states() -> list[bm.BatchTaskState | None]:
                return [t.state for t in batch.list_tasks("LinuxFfmpegJob")]

            wait_until(
                lambda: all(s == bm.BatchTaskState.COMPLETED for s in states()),
                timeout=120,
                interval=0.2,
                what=lambda: f"the tasks to complete: {states()}",
            )
            for task in batch.list_tasks("LinuxFfmpegJob"):
                assert task.execution_info is not None
                assert task.execution_info.exit_code == 0, task.id

            outputs = sorted(b.name for b in blob.get_container_client("output").list_blobs())
            assert outputs == sorted(Path(n).stem + ".mp3" for n in names)
            for name in outputs:
                data = blob.get_blob_client("output", name).download_blob().readall()
                local = tmp_path / "out" / name
                local.parent.mkdir(exist_ok=True)
                local.write_bytes(data)
                decoded = subprocess.run(
                    [ffmpeg_exe, "-v", "error", "-i", str(local), "-f", "null", "-"],
                    capture_output=True, text=True, check=False,
                )  # fmt: skip
                assert decoded.returncode == 0, decoded.stderr
                probe = subprocess.run(
                    [ffmpeg_exe, "-hide_banner", "-i", str(local)],
                    capture_output=True,
                    text=True,
                    check=False,
                )
                assert "Audio: mp3" in probe.stderr

            batch.begin_delete_job("LinuxFfmpegJob").result()
            batch.begin_delete_pool("LinuxFfmpegPool").result()
            blob.delete_container("input")
            blob.delete_container("output")
            assert oa.leaks(timeout=10) == NOTHING_LEFT
