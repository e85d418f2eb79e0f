"""Client CPU of one blob upload and one blob download: the floor of a file's CPU on Azure.

Every file costs the client one upload (its input) and one download (its output)
through azure-storage-blob, whatever else the run does. This measures the CPU the
calling thread spends in each, against Azurite, through

- ``ours``: the session's storage client (``_azure/_clients.py``: one ``BlobClient`` a
  call made by ``blob_client``, the pooled transport on a session that reads the
  environment once);
- ``sdk``: ``BlobServiceClient.from_connection_string`` as the SDK makes it (its
  default requests transport, which reads the environment on every request).

Each call's CPU is the calling thread's (``time.thread_time``): the in-process Batch
emulator of ``OfflineAzure`` and Azurite's own process are not in it. Prints the median
per call over the rounds, and sdk / ours.

    .venv/bin/python benchmarks/blob_calls.py [--calls 400] [--size-kib 20] [--threads 1 16] [--rounds 3]
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from azure.storage.blob import BlobServiceClient, ContentSettings

from batch_transcode._azure._clients import blob_client, make_blob_service_client
from batch_transcode.testing import OfflineAzure


def _per_call_cpu(call: Callable[[int], None], calls: int, threads: int) -> float:
    """Mean CPU of the calling threads per call, in ms."""
    spent: list[float] = []
    lock = threading.Lock()

    def timed(i: int) -> None:
        start = time.thread_time()
        call(i)
        used = time.thread_time() - start
        with lock:
            spent.append(used)

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(timed, range(calls)))
    return 1000 * sum(spent) / len(spent)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=400)
    parser.add_argument("--size-kib", type=int, default=20)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    data = os.urandom(args.size_kib * 1024)

    with OfflineAzure() as oa:
        ours, _ = make_blob_service_client(oa.config())
        sdk = BlobServiceClient.from_connection_string(oa.env["AZURE_STORAGE_CONNECTION_STRING"])
        ours.create_container("blob-calls")

        def calls(service: BlobServiceClient) -> dict[str, Callable[[int], None]]:
            def upload(i: int) -> None:
                blob_client(service, "blob-calls", f"in/clip{i:06d}.wav").upload_blob(
                    io.BytesIO(data),
                    length=len(data),
                    overwrite=True,
                    content_settings=ContentSettings(content_type="audio/wav"),
                )

            def download(i: int) -> None:
                blob = blob_client(service, "blob-calls", f"in/clip{i:06d}.wav")
                blob.download_blob(max_concurrency=2).readinto(io.BytesIO())

            return {"upload": upload, "download": download}

        print(f"{args.calls} calls of {args.size_kib} KiB, {args.rounds} rounds; client-thread CPU per call")
        print("| threads | call | ours | sdk | sdk / ours |")
        print("|---|---|---|---|---|")
        for threads in args.threads:
            for kind in ("upload", "download"):
                found: dict[str, list[float]] = {"ours": [], "sdk": []}
                for _ in range(args.rounds):  # alternate, so that drift touches both alike
                    for name, service in (("ours", ours), ("sdk", sdk)):
                        found[name].append(_per_call_cpu(calls(service)[kind], args.calls, threads))
                a, b = statistics.median(found["ours"]), statistics.median(found["sdk"])
                print(f"| {threads} | {kind} | {a:.2f} ms | {b:.2f} ms | {b / a:.2f} |")
        ours.delete_container("blob-calls")


if __name__ == "__main__":
    main()
