"""Convert videos to MP3 on Azure Batch, keyless: a program written for the public cloud.

It knows nothing of batch_transcode. It authenticates with ``DefaultAzureCredential()``
(a managed identity, the Azure CLI, ...), builds the storage URL from the account name
the way Microsoft's samples do, stages the inputs in Blob Storage with user-delegation
SAS, runs one Batch task per file on a pool of Ubuntu 24.04 nodes that installs ffmpeg
in its start task, downloads the MP3s, and deletes the pool, the job and the
containers it made. Configuration comes from the environment:

    AZURE_BATCH_ENDPOINT   https://{account}.{region}.batch.azure.com
    AZURE_STORAGE_ACCOUNT  the storage account name

    python public_cloud_app.py OUTPUT_DIR VIDEO [VIDEO ...]

docs/offline-testing.md ("Run your own app offline") runs it, unchanged, against
``batch-transcode emulator --intercept --entra-id``.
"""

from __future__ import annotations

import datetime as dt
import os
import shlex
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import quote

from azure.batch import BatchClient
from azure.batch import models as bm
from azure.identity import DefaultAzureCredential
from azure.storage.blob import (
    BlobSasPermissions,
    BlobServiceClient,
    ContainerSasPermissions,
    generate_blob_sas,
    generate_container_sas,
)

POOL_IMAGE = bm.BatchVmImageReference(
    publisher="canonical", offer="ubuntu-24_04-lts", sku="server", version="latest"
)
NODE_AGENT = "batch.node.ubuntu 24.04"
INSTALL_FFMPEG = '/bin/bash -c "sudo apt-get update && sudo apt-get install -y ffmpeg"'


def main(output_dir: Path, videos: list[Path]) -> int:
    run = uuid.uuid4().hex[:8]
    credential = DefaultAzureCredential()
    account = os.environ["AZURE_STORAGE_ACCOUNT"]
    blobs = BlobServiceClient(f"https://{account}.blob.core.windows.net/", credential=credential)
    batch = BatchClient(os.environ["AZURE_BATCH_ENDPOINT"], credential)
    inputs, outputs = f"in-{run}", f"out-{run}"
    pool_id, job_id = f"mp3-pool-{run}", f"mp3-job-{run}"
    start = dt.datetime.now(dt.UTC)
    expiry = start + dt.timedelta(hours=2)
    key = blobs.get_user_delegation_key(start - dt.timedelta(minutes=5), expiry)
    try:
        blobs.create_container(inputs)
        blobs.create_container(outputs)
        for video in videos:
            with video.open("rb") as data:
                blobs.get_blob_client(inputs, video.name).upload_blob(data, overwrite=True)
        out_sas = generate_container_sas(
            account,
            outputs,
            user_delegation_key=key,
            permission=ContainerSasPermissions(create=True, write=True),
            expiry=expiry,
        )
        batch.create_pool(
            bm.BatchPoolCreateOptions(
                id=pool_id,
                vm_size="Standard_D2s_v3",
                virtual_machine_configuration=bm.VirtualMachineConfiguration(
                    image_reference=POOL_IMAGE, node_agent_sku_id=NODE_AGENT
                ),
                target_dedicated_nodes=1,
                start_task=bm.BatchStartTask(
                    command_line=INSTALL_FFMPEG,
                    user_identity=bm.UserIdentity(
                        auto_user=bm.AutoUserSpecification(
                            scope=bm.AutoUserScope.POOL, elevation_level=bm.ElevationLevel.ADMIN
                        )
                    ),
                    wait_for_success=True,
                ),
            )
        )
        batch.create_job(bm.BatchJobCreateOptions(id=job_id, pool_info=bm.BatchPoolInfo(pool_id=pool_id)))
        tasks = []
        for i, video in enumerate(videos):
            sas = generate_blob_sas(
                account,
                inputs,
                video.name,
                user_delegation_key=key,
                permission=BlobSasPermissions(read=True),
                expiry=expiry,
            )
            mp3 = f"{video.stem}.mp3"
            command = (
                f"ffmpeg -y -i {shlex.quote(video.name)} -vn -c:a libmp3lame -b:a 128k {shlex.quote(mp3)}"
            )
            tasks.append(
                bm.BatchTaskCreateOptions(
                    id=f"task{i}",
                    command_line=f"/bin/bash -c {shlex.quote(command)}",
                    resource_files=[
                        bm.ResourceFile(
                            http_url=f"https://{account}.blob.core.windows.net/{inputs}/{quote(video.name)}?{sas}",
                            file_path=video.name,
                        )
                    ],
                    output_files=[
                        bm.OutputFile(
                            file_pattern=mp3,
                            destination=bm.OutputFileDestination(
                                container=bm.OutputFileBlobContainerDestination(
                                    container_url=f"https://{account}.blob.core.windows.net/{outputs}?{out_sas}",
                                    path=mp3,
                                )
                            ),
                            upload_options=bm.OutputFileUploadConfiguration(
                                upload_condition=bm.OutputFileUploadCondition.TASK_SUCCESS
                            ),
                        )
                    ],
                )
            )
        batch.create_tasks(job_id, tasks)
        deadline = time.monotonic() + 600
        while any(t.state != bm.BatchTaskState.COMPLETED for t in batch.list_tasks(job_id)):
            if time.monotonic() > deadline:
                print("timed out waiting for the tasks", file=sys.stderr)
                return 1
            time.sleep(1)
        failed = [
            t.id
            for t in batch.list_tasks(job_id)
            if t.execution_info.result != bm.BatchTaskExecutionResult.SUCCESS
        ]
        output_dir.mkdir(parents=True, exist_ok=True)
        for blob in blobs.get_container_client(outputs).list_blobs():
            (output_dir / blob.name).write_bytes(
                blobs.get_blob_client(outputs, blob.name).download_blob().readall()
            )
            print(f"converted {blob.name}")
        if failed:
            print(f"tasks failed: {', '.join(failed)}", file=sys.stderr)
        return 1 if failed else 0
    finally:
        for delete in (
            lambda: batch.begin_delete_job(job_id),
            lambda: batch.begin_delete_pool(pool_id),
            lambda: blobs.delete_container(inputs),
            lambda: blobs.delete_container(outputs),
        ):
            try:
                delete()
            except Exception as exc:  # clean up the rest regardless
                print(f"cleanup: {type(exc).__name__}", file=sys.stderr)


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    sys.exit(main(Path(sys.argv[1]), [Path(p) for p in sys.argv[2:]]))
