"""Streaming vs the tutorial's pattern on Azure: time to first result, to last result, wall time.

One OfflineAzure (Azurite + the Batch emulator, in this process) with the client's link
to storage limited: ``--latency`` seconds added to every storage request and a cap of
``--bandwidth-mbps`` megabytes per second each way (``StorageFaults(bandwidth=...)``; the
emulated nodes' own transfers are not capped, as nodes sit next to the storage account).
N WAV files (``--seconds`` of stereo 44.1 kHz PCM each) become MP3s with the real ffmpeg
on the emulated nodes (the node image's, installed by an apt start task in both), in
alternating rounds of

- ``streaming``: the library (streaming is its only order): tasks are added as their
  inputs land, finished tasks are read as they finish and each output downloads at once;
- ``tutorial``: the Azure-Samples/batch-python-ffmpeg-tutorial flow, as
  ``control_plane.py`` runs it (``run_tutorial``): upload the inputs one by one, create
  the pool, the job and every task, list every task every ``--tutorial-poll`` seconds
  until all are completed; then, since a result is a file on the user's disk, download
  the outputs one by one.

Times are from the start of each client (entering ``TranscodeSession``; the tutorial's
first upload) to each result (an ``as_completed()`` result; an output downloaded); wall
time runs to the end (the ``with`` block, teardown included; the tutorial's deletes).
Printed per round and as medians, with streaming's first/last result (target <= 0.25),
the ratio of the walls, streaming / tutorial, and the streaming run's pool utilisation
(``Report.usage``: busy slot time over the nodes' allocated slot time).

    .venv/bin/python benchmarks/pipeline.py [--files 200] [--rounds 2]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from batch_transcode import TranscodeSession
from batch_transcode._ffmpeg import find_ffmpeg
from batch_transcode.testing import OfflineAzure, StorageFaults

sys.path.insert(0, str(Path(__file__).resolve().parent))
from control_plane import run_tutorial  # the tutorial's pattern, shared

ORDERS = ("streaming", "tutorial")


@dataclass
class Round:
    order: str
    first: float
    last: float
    wall: float
    converted: int
    #: Report.usage's figures (streaming only): node-hours and utilisation of the pool.
    node_hours: float | None = None
    utilisation: float | None = None

    @property
    def first_over_last(self) -> float:
        return self.first / self.last


def make_inputs(root: Path, files: int, seconds: float) -> list[Path]:
    """``files`` WAV files of ``seconds`` each (one sine, rendered once, copied). No spaces
    in the names: the tutorial's command lines do not quote them."""
    root.mkdir(parents=True, exist_ok=True)
    first = root / "clip0000.wav"
    subprocess.run(
        [find_ffmpeg(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y", "-f", "lavfi",
         "-i", f"sine=frequency=440:duration={seconds}", "-ac", "2", "-ar", "44100",
         "file:" + str(first)],
        check=True, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    paths = [first]
    for i in range(1, files):
        path = root / f"clip{i:04d}.wav"
        shutil.copyfile(first, path)
        paths.append(path)
    return paths


def streaming_round(oa: OfflineAzure, inputs: list[Path], out: Path, nodes: int) -> Round:
    shutil.rmtree(out, ignore_errors=True)
    config = oa.config(dedicated_nodes=nodes, task_slots_per_node=2, poll_interval_max=1.0)
    times: list[float] = []
    started = time.perf_counter()
    with TranscodeSession(config) as session:
        job = session.submit(inputs, output_dir=out, preset="mp3")
        converted = 0
        for result in job.as_completed():
            times.append(time.perf_counter() - started)
            converted += result.status == "converted"
        usage = job.wait().usage
    wall = time.perf_counter() - started
    if usage is None:
        raise SystemExit("streaming: the report has no usage")
    return Round("streaming", times[0], times[-1], wall, converted, usage.node_hours, usage.utilisation)


def tutorial_round(oa: OfflineAzure, inputs: list[Path], out: Path, nodes: int, poll: float) -> Round:
    shutil.rmtree(out, ignore_errors=True)
    params = {
        "inputs": str(inputs[0].parent),
        "task": "apt",
        "stub": "",
        "nodes": nodes,
        "slots": 2,
        "tutorial_poll": poll,
        "download": str(out),
    }
    times: list[float] = []
    started = time.perf_counter()
    run_tutorial(
        params,
        env=oa.env,
        on_result=lambda _path: times.append(time.perf_counter() - started),
    )
    wall = time.perf_counter() - started
    if not times:
        raise SystemExit("tutorial: no output converted")
    return Round("tutorial", times[0], times[-1], wall, len(times))


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
    parser.add_argument("--tutorial-poll", type=float, default=1.0, help="seconds between its listings")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of each client, alternating")
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
        out = Path(tmp) / "out"
        with OfflineAzure(storage_faults=faults, allocation_delay=args.allocation_delay) as oa:
            for r in range(args.rounds):
                for order in ORDERS if r % 2 == 0 else ORDERS[::-1]:
                    if order == "streaming":
                        got = streaming_round(oa, inputs, out, args.nodes)
                    else:
                        got = tutorial_round(oa, inputs, out, args.nodes, args.tutorial_poll)
                    rounds.append(got)
                    print(
                        f"  round {r + 1} {got.order:9}  first {got.first:6.2f} s  last {got.last:6.2f} s"
                        f"  wall {got.wall:6.2f} s  first/last {got.first_over_last:4.2f}"
                        f"  converted {got.converted}/{args.files}"
                        + (
                            f"  node-hours {got.node_hours:.4f}  utilisation {got.utilisation:.0%}"
                            if got.utilisation is not None
                            else ""
                        )
                    )
                    if got.converted != args.files:
                        raise SystemExit(f"{got.order}: {got.converted} of {args.files} converted")

    def median(order: str, what: str) -> float:
        return statistics.median(getattr(x, what) for x in rounds if x.order == order)

    print("medians:")
    for order in ORDERS:
        print(
            f"  {order:9}  first {median(order, 'first'):6.2f} s  last {median(order, 'last'):6.2f} s"
            f"  wall {median(order, 'wall'):6.2f} s  first/last {median(order, 'first_over_last'):4.2f}"
        )
    ratio = median("streaming", "wall") / median("tutorial", "wall")
    first_last = median("streaming", "first_over_last")
    print(f"streaming first/last result    {first_last:4.2f}   (target <= 0.25)")
    print(f"streaming wall / tutorial wall {ratio:4.2f}")
    utilisation = statistics.median(x.utilisation for x in rounds if x.utilisation is not None)
    print(f"streaming pool utilisation     {utilisation:4.2f}   (Report.usage: busy / allocated slot time)")


if __name__ == "__main__":
    main()
