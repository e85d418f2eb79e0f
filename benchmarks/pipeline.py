"""Streaming vs the barrier order on Azure: time to first result, to last result, wall time.

One OfflineAzure (Azurite + the Batch emulator, in this process) with the client's link
to storage limited: ``--latency`` seconds added to every storage request and a cap of
``--bandwidth-mbps`` megabytes per second each way (``StorageFaults(bandwidth=...)``; the
emulated nodes' own transfers are not capped, as nodes sit next to the storage account).
N WAV files (``--seconds`` of stereo 44.1 kHz PCM each) become MP3s with the real ffmpeg
on the emulated nodes, in alternating rounds of

- ``streaming``: the library as it is: tasks are added as their inputs land, finished
  tasks are read as they finish and each output downloads at once;
- ``barrier``: the same code with ``batch_transcode._azure.run.STREAMING = False``: upload
  every input, add every task, wait for all, list once, download every output.

Times are from entering ``TranscodeSession`` (pool creation starts there in both) to
each ``as_completed()`` result; wall time runs to the end of the ``with`` block
(teardown included). Printed per round and as medians, with the ratios the streaming
order is held to: first/last result <= 0.25, wall <= 0.65 x the barrier wall.

    .venv/bin/python benchmarks/pipeline.py [--files 200] [--rounds 2]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from batch_transcode import TranscodeSession
from batch_transcode._azure import run as azure_run
from batch_transcode._ffmpeg import find_ffmpeg
from batch_transcode.testing import OfflineAzure, StorageFaults


@dataclass
class Round:
    order: str
    first: float
    last: float
    wall: float
    converted: int

    @property
    def first_over_last(self) -> float:
        return self.first / self.last


def make_inputs(root: Path, files: int, seconds: float) -> list[Path]:
    """``files`` WAV files of ``seconds`` each (one sine, rendered once, copied)."""
    root.mkdir(parents=True, exist_ok=True)
    first = root / "clip 0000.wav"
    subprocess.run(
        [find_ffmpeg(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y", "-f", "lavfi",
         "-i", f"sine=frequency=440:duration={seconds}", "-ac", "2", "-ar", "44100",
         "file:" + str(first)],
        check=True, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    paths = [first]
    for i in range(1, files):
        path = root / f"clip {i:04d}.wav"
        shutil.copyfile(first, path)
        paths.append(path)
    return paths


def one_round(oa: OfflineAzure, inputs: list[Path], out: Path, order: str, nodes: int) -> Round:
    shutil.rmtree(out, ignore_errors=True)
    azure_run.STREAMING = order == "streaming"
    try:
        config = oa.config(dedicated_nodes=nodes, task_slots_per_node=2, poll_interval_max=1.0)
        times: list[float] = []
        started = time.perf_counter()
        with TranscodeSession(config) as session:
            job = session.submit(inputs, output_dir=out, preset="mp3")
            converted = 0
            for result in job.as_completed():
                times.append(time.perf_counter() - started)
                converted += result.status == "converted"
        wall = time.perf_counter() - started
    finally:
        azure_run.STREAMING = True
    return Round(order, times[0], times[-1], wall, converted)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=3.0, help="length of each input")
    parser.add_argument("--bandwidth-mbps", type=float, default=4.0, help="MB/s each way")
    parser.add_argument("--latency", type=float, default=0.020, help="seconds per storage request")
    parser.add_argument("--allocation-delay", type=float, default=2.0, help="seconds to allocate nodes")
    parser.add_argument("--nodes", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2, help="rounds of each order, alternating")
    args = parser.parse_args()

    faults = StorageFaults(latency=args.latency, bandwidth=args.bandwidth_mbps * 1e6)
    with tempfile.TemporaryDirectory() as tmp:
        inputs = make_inputs(Path(tmp) / "in", args.files, args.seconds)
        size_mb = sum(p.stat().st_size for p in inputs) / 1e6
        print(
            f"{args.files} inputs, {size_mb:.0f} MB; link {args.bandwidth_mbps:g} MB/s each way, "
            f"+{args.latency * 1000:g} ms per storage request; {args.nodes} nodes x 2 slots, "
            f"allocation {args.allocation_delay:g} s"
        )
        rounds: list[Round] = []
        with OfflineAzure(storage_faults=faults, allocation_delay=args.allocation_delay) as oa:
            for r in range(args.rounds):
                pair = ("streaming", "barrier") if r % 2 == 0 else ("barrier", "streaming")
                for order in pair:
                    got = one_round(oa, inputs, Path(tmp) / "out", order, args.nodes)
                    rounds.append(got)
                    print(
                        f"  round {r + 1} {got.order:9}  first {got.first:6.2f} s  last {got.last:6.2f} s"
                        f"  wall {got.wall:6.2f} s  first/last {got.first_over_last:4.2f}"
                        f"  converted {got.converted}/{args.files}"
                    )
                    if got.converted != args.files:
                        raise SystemExit(f"{got.order}: {got.converted} of {args.files} converted")

    def median(order: str, what: str) -> float:
        return statistics.median(getattr(x, what) for x in rounds if x.order == order)

    print("medians:")
    for order in ("streaming", "barrier"):
        print(
            f"  {order:9}  first {median(order, 'first'):6.2f} s  last {median(order, 'last'):6.2f} s"
            f"  wall {median(order, 'wall'):6.2f} s  first/last {median(order, 'first_over_last'):4.2f}"
        )
    ratio = median("streaming", "wall") / median("barrier", "wall")
    first_last = median("streaming", "first_over_last")
    print(f"streaming first/last result  {first_last:4.2f}   (target <= 0.25)")
    print(f"streaming wall / barrier wall {ratio:4.2f}   (target <= 0.65)")


if __name__ == "__main__":
    main()
