"""What going keyless costs offline: Shared Key vs Microsoft Entra ID on OfflineAzure.

For each mode, one OfflineAzure is started and one session converts N sample files:

- ``shared-key``: ``OfflineAzure(storage_faults=StorageFaults())`` (the same storage proxy
  in front of Azurite as below, no faults), Batch over http with Shared Key, storage with
  the account key, tasks with service SAS;
- ``entra-id``: ``OfflineAzure(entra_id=True)``, both services over https taking bearer
  tokens only, tasks with user-delegation SAS.

Printed per mode: start-up seconds, convert seconds (session open to close, teardown
included), Batch requests, storage requests through the proxy, tokens asked for; then the
entra-id / shared-key ratios. Wall-clock figures on a shared machine are noisy: run
``--rounds`` > 1 and read the medians.

    .venv/bin/python benchmarks/keyless.py --files 20 --rounds 3
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from batch_transcode import TranscodeSession
from batch_transcode.samples import make_sample_media
from batch_transcode.testing import OfflineAzure, StorageFaults


def run(mode: str, inputs: list[Path], out: Path) -> dict[str, float]:
    started = time.perf_counter()
    harness: Any = (
        OfflineAzure(entra_id=True) if mode == "entra-id" else OfflineAzure(storage_faults=StorageFaults())
    )
    with harness as oa:
        up = time.perf_counter() - started
        tokens_before = len(oa.credential.scopes)
        t0 = time.perf_counter()
        with TranscodeSession(oa.config()) as session:
            report = session.convert(inputs, output_dir=out)
        seconds = time.perf_counter() - t0
        report.raise_for_failures()
        proxy = oa.storage_proxy
        assert proxy is not None
        assert oa.leaks(timeout=30) == {"pools": [], "jobs": [], "containers": []}
        return {
            "startup_s": up,
            "convert_s": seconds,
            "batch_requests": float(len(oa.batch.request_log)),
            "storage_requests": float(proxy.requests),
            "tokens": float(len(oa.credential.scopes) - tokens_before),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bt-keyless-") as tmp:
        inputs = make_sample_media(Path(tmp) / "in", count=args.files)
        results: dict[str, list[dict[str, float]]] = {"shared-key": [], "entra-id": []}
        for r in range(args.rounds):
            for mode in results:
                results[mode].append(run(mode, inputs, Path(tmp) / f"out-{mode}-{r}"))
    medians = {
        mode: {key: statistics.median(run[key] for run in runs) for key in runs[0]}
        for mode, runs in results.items()
    }
    keys = list(medians["shared-key"])
    print(f"{args.files} files, median of {args.rounds} round(s)")
    print(f"{'':>18}" + "".join(f"{k:>18}" for k in keys))
    for mode, values in medians.items():
        print(f"{mode:>18}" + "".join(f"{values[k]:>18.2f}" for k in keys))
    ratios = {
        k: medians["entra-id"][k] / medians["shared-key"][k] if medians["shared-key"][k] else float("nan")
        for k in keys
    }
    print(f"{'entra / key':>18}" + "".join(f"{ratios[k]:>18.2f}" for k in keys))


if __name__ == "__main__":
    main()
