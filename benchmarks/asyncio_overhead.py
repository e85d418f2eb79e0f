"""What awaiting a job costs, and how free the event loop stays meanwhile.

Converts the same N sample videos (MP3, local backend) three ways, each into a
fresh folder, several rounds in alternating order:

- ``sync``: ``session.convert(...)`` (``submit().wait()``, a blocking wait);
- ``await``: ``report = await job`` inside ``async with TranscodeSession(...)``;
- ``async for``: ``async for result in job`` then ``await job``.

Printed: the median wall time of each and its ratio to ``sync``, and, for the asyncio
ways, the event loop's lag while the job ran: a ticker task asks to sleep 5 ms in a
loop and records how late it wakes (the median and the worst wake-up).

    .venv/bin/python benchmarks/asyncio_overhead.py --files 40 --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from batch_transcode import LocalConfig, TranscodeSession
from batch_transcode.samples import make_sample_media

TICK = 0.005


def run_sync(paths: list[Path], out: Path, workers: int) -> float:
    started = time.perf_counter()
    with TranscodeSession(LocalConfig(workers=workers)) as s:
        report = s.convert(paths, output_dir=out, skip_existing=False)
    assert report.ok, report.summary()
    return time.perf_counter() - started


async def _ticker(lags: list[float]) -> None:
    loop = asyncio.get_running_loop()
    while True:
        asked = loop.time()
        await asyncio.sleep(TICK)
        lags.append(loop.time() - asked - TICK)


def run_async(paths: list[Path], out: Path, workers: int, iterate: bool) -> tuple[float, list[float]]:
    lags: list[float] = []

    async def main() -> float:
        started = time.perf_counter()
        async with TranscodeSession(LocalConfig(workers=workers)) as s:
            job = s.submit(paths, output_dir=out, skip_existing=False)
            ticker = asyncio.create_task(_ticker(lags))
            if iterate:
                async for _ in job:
                    pass
            report = await job
            ticker.cancel()
        assert report.ok, report.summary()
        return time.perf_counter() - started

    return asyncio.run(main()), lags


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bt-bench-asyncio-") as tmp:
        root = Path(tmp)
        paths = make_sample_media(root / "in", count=args.files)
        times: dict[str, list[float]] = {"sync": [], "await": [], "async for": []}
        lags: dict[str, list[float]] = {"await": [], "async for": []}
        ways: list[tuple[str, Callable[[Path], Any]]] = [
            ("sync", lambda out: (run_sync(paths, out, args.workers), [])),
            ("await", lambda out: run_async(paths, out, args.workers, iterate=False)),
            ("async for", lambda out: run_async(paths, out, args.workers, iterate=True)),
        ]
        for round_ in range(args.rounds):
            order = ways if round_ % 2 == 0 else ways[::-1]
            for name, way in order:
                seconds, lag = way(root / f"out-{name}-{round_}")
                times[name].append(seconds)
                lags.get(name, []).extend(lag)

    base = statistics.median(times["sync"])
    print(f"{args.files} files, {args.workers} workers, {args.rounds} rounds (median wall time)")
    for name, values in times.items():
        median = statistics.median(values)
        line = f"  {name:10s} {median:7.2f} s  ratio to sync {median / base:.2f}"
        if lags.get(name):
            ms = sorted(x * 1000 for x in lags[name])
            line += (
                f"  loop lag median {statistics.median(ms):.2f} ms, worst {ms[-1]:.1f} ms ({len(ms)} ticks)"
            )
        print(line)


if __name__ == "__main__":
    main()
