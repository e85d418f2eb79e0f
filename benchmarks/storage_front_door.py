"""What the storage front door costs: OfflineAzure's storage straight to Azurite
(``service_errors=False``) vs through the proxy that answers with the service's codes
(the default).

For each mode one OfflineAzure is started and N blobs of SIZE bytes are uploaded then
downloaded with the unmodified ``azure-storage-blob`` client, one after the other. The
proxy runs in this process, so its relaying shows as this process's CPU time as well as
wall time. Printed per mode: wall seconds and this process's CPU seconds, per request;
then the front-door / direct ratios. Wall figures on a shared machine are noisy: run
``--rounds`` > 1 and read the medians.

    .venv/bin/python benchmarks/storage_front_door.py --blobs 300 --size 262144 --rounds 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

from batch_transcode.testing import OfflineAzure


def measure(service_errors: bool, blobs: int, size: int) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) for ``blobs`` uploads and downloads."""
    data = os.urandom(size)
    with OfflineAzure(service_errors=service_errors) as oa:
        client = oa.blob_service_client()
        container = client.create_container("front-door")
        wall, cpu = time.perf_counter(), time.process_time()
        for i in range(blobs):
            container.upload_blob(f"b{i}", data)
        for i in range(blobs):
            container.download_blob(f"b{i}").readall()
        return time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blobs", type=int, default=300)
    parser.add_argument("--size", type=int, default=256 * 1024)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    requests = 2 * args.blobs
    results: dict[str, list[tuple[float, float]]] = {"direct": [], "front door": []}
    for _ in range(args.rounds):
        results["direct"].append(measure(False, args.blobs, args.size))
        results["front door"].append(measure(True, args.blobs, args.size))
    medians = {}
    for mode, runs in results.items():
        wall = statistics.median(r[0] for r in runs)
        cpu = statistics.median(r[1] for r in runs)
        medians[mode] = (wall, cpu)
        print(
            f"{mode:>10}: {wall:6.2f} s wall, {cpu:5.2f} s CPU here; "
            f"{1000 * wall / requests:5.2f} ms wall and {1000 * cpu / requests:5.2f} ms CPU per request"
        )
    (dw, dc), (fw, fc) = medians["direct"], medians["front door"]
    print(f"front door / direct: wall x{fw / dw:.2f}, CPU in this process x{fc / dc:.2f}")


if __name__ == "__main__":
    main()
