"""Staging throughput: Staging.upload_inputs / Staging.download vs a sequential loop.

200 files x 1 MiB into Azurite, runs alternating between the two ways (ours: the
uploads of ``upload_inputs``, ``upload_concurrency`` at once; the downloads of
``Staging.download``, one per item, ``download_concurrency`` at once), first on bare
loopback, then through StorageProxy adding 20 ms per request (closer to a real
storage account's round trip). Prints ratios (sequential time / ours); then a
second upload of unchanged inputs into a persistent container (bytes uploaded
should be 0).

    .venv/bin/python benchmarks/staging.py [--files 200] [--size-kib 1024] [--rounds 3]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from azure.storage.blob import BlobServiceClient

from batch_transcode import AzureConfig, RetryPolicy
from batch_transcode._azure._clients import make_blob_service_client
from batch_transcode._azure.containers import Containers, create_containers
from batch_transcode._azure.names import SessionNames, input_blob, output_blobs
from batch_transcode._azure.staging import StagedInput, Staging, UploadLedger
from batch_transcode._naming import WorkItem, plan_work
from batch_transcode._teardown import Teardown
from batch_transcode.testing import OfflineAzure, StorageFaults


def _make_inputs(root: Path, files: int, size: int) -> list[WorkItem]:
    paths = []
    for i in range(files):
        path = root / "in" / f"d{i % 10}" / f"clip {i:04d}.mp4"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(size))
        paths.append(path)
    return plan_work(paths, root / "out", ["mp3"])


def _timed(fn: Callable[..., object], *args: object) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def _sequential_upload(service: BlobServiceClient, container: str, items: list[WorkItem]) -> None:
    client = service.get_container_client(container)
    for item in items:
        with open(item.source, "rb") as f:
            client.upload_blob(input_blob(item.relative_source), f, overwrite=True)


def _sequential_download(service: BlobServiceClient, container: str, items: list[WorkItem]) -> None:
    client = service.get_container_client(container)
    for item in items:
        item.outputs[0].parent.mkdir(parents=True, exist_ok=True)
        with open(item.outputs[0], "wb") as f:
            client.download_blob(output_blobs(item.relative_outputs)[0]).readinto(f)


def _upload(staging: Staging, items: list[WorkItem]) -> list[StagedInput]:
    """Our upload, as a new session makes it (a fresh ledger: nothing known yet)."""
    return staging.upload_inputs(items, UploadLedger())


def _download(staging: Staging, items: list[WorkItem]) -> None:
    """Our download: ``Staging.download`` per item, ``download_concurrency`` at once."""
    with ThreadPoolExecutor(staging.download_concurrency, thread_name_prefix="bench-download") as pool:
        failed = [d.error for d in pool.map(staging.download, items) if not d.ok]
    if failed:
        raise SystemExit(f"{len(failed)} downloads failed, first: {failed[0]}")


def _staging(
    service: BlobServiceClient,
    key: str | None,
    containers: Containers,
    names: SessionNames,
    config: AzureConfig,
) -> tuple[Staging, Teardown]:
    """A session's staging, its containers created; close the teardown to remove them."""
    teardown = Teardown()
    create_containers(containers, service, names, config.retry, teardown)
    expiry = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    staging = Staging.connect(service, containers, expiry=expiry, account_key=key, node_identity=None)
    return staging, teardown


def _round(oa: OfflineAzure, items: list[WorkItem], out_root: Path, rounds: int, label: str) -> None:
    config = oa.config(retry=RetryPolicy(wait_initial=0.05, wait_max=0.5))
    service, key = make_blob_service_client(config)
    total_mb = sum(i.source.stat().st_size for i in items) / 1e6
    ours_up: list[float] = []
    seq_up: list[float] = []
    ours_down: list[float] = []
    seq_down: list[float] = []
    with service:
        for r in range(rounds):
            names = SessionNames.new("bench")
            containers = Containers(input=names.input_container, output=names.output_container)
            staging, teardown = _staging(service, key, containers, names, config)
            try:
                order = ("ours", "seq") if r % 2 == 0 else ("seq", "ours")
                for which in order:
                    if which == "ours":
                        ours_up.append(_timed(_upload, staging, items))
                    else:
                        seq_up.append(_timed(_sequential_upload, service, containers.input, items))
                # outputs: copy the inputs' bytes to the output names
                out = service.get_container_client(containers.output)
                for item in items:
                    with open(item.source, "rb") as f:
                        out.upload_blob(output_blobs(item.relative_outputs)[0], f, overwrite=True)
                for which in order:
                    shutil.rmtree(out_root, ignore_errors=True)
                    if which == "ours":
                        ours_down.append(_timed(_download, staging, items))
                    else:
                        seq_down.append(_timed(_sequential_download, service, containers.output, items))
            finally:
                teardown.close()
    up_o, up_s = statistics.median(ours_up), statistics.median(seq_up)
    dn_o, dn_s = statistics.median(ours_down), statistics.median(seq_down)
    print(f"[{label}] {len(items)} files, {total_mb:.0f} MB, {rounds} alternating rounds (medians)")
    print(f"  upload   ours {up_o:6.2f} s ({total_mb / up_o:6.1f} MB/s)   sequential {up_s:6.2f} s "
          f"({total_mb / up_s:6.1f} MB/s)   ratio sequential/ours {up_s / up_o:5.2f}x")  # fmt: skip
    print(f"  download ours {dn_o:6.2f} s ({total_mb / dn_o:6.1f} MB/s)   sequential {dn_s:6.2f} s "
          f"({total_mb / dn_s:6.1f} MB/s)   ratio sequential/ours {dn_s / dn_o:5.2f}x")  # fmt: skip


def _persistent(oa: OfflineAzure, items: list[WorkItem]) -> None:
    config = oa.config()
    service, key = make_blob_service_client(config)
    with service:
        for run in (1, 2):
            # two sessions, one after the other, sharing a persistent input container
            names = SessionNames.new("bench")
            containers = Containers(
                input="bench-persistent", output=names.output_container, persistent_input=True
            )
            staging, teardown = _staging(service, key, containers, names, config)
            started = time.perf_counter()
            staged = _upload(staging, items)
            seconds = time.perf_counter() - started
            teardown.close()
            uploaded = [s for s in staged if s.uploaded]
            print(
                f"  persistent input container, run {run}: {sum(s.size for s in uploaded) / 1e6:.1f} MB "
                f"uploaded, {len(staged) - len(uploaded)} skipped, {seconds:.2f} s"
            )
        service.delete_container("bench-persistent")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--size-kib", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        items = _make_inputs(Path(tmp), args.files, args.size_kib * 1024)
        with OfflineAzure() as oa:
            _round(oa, items, Path(tmp) / "out", args.rounds, "loopback")
            _persistent(oa, items)
        with OfflineAzure(storage_faults=StorageFaults(latency=0.020)) as oa:
            _round(oa, items, Path(tmp) / "out", args.rounds, "loopback + 20 ms per request")
            _persistent(oa, items)


if __name__ == "__main__":
    main()
