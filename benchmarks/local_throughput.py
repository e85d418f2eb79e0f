"""Local backend vs a plain ``xargs -P <cores> ffmpeg`` baseline, in one run.

Generates N sample videos (test pattern + tone), converts them to MP3 with
both, alternating, and prints the wall times and the ratio ours/baseline
(target: <= 1.05).

    python benchmarks/local_throughput.py [--files 24] [--seconds 60] [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from batch_transcode import LocalConfig, TranscodeSession
from batch_transcode._ffmpeg import find_ffmpeg
from batch_transcode._presets import PRESETS


def generate(ffmpeg: str, directory: Path, count: int, seconds: int) -> list[Path]:
    template = directory / "template.mp4"
    subprocess.run(
        [ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
         "-f", "lavfi", "-i", f"testsrc=duration={seconds}:size=320x240:rate=25",
         "-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}",
         "-c:v", "mpeg4", "-c:a", "aac", "-shortest", str(template)],
        check=True,
    )  # fmt: skip
    files = []
    for i in range(count):
        path = directory / "in" / f"clip {i:03d}.mp4"
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(template, path)
        files.append(path)
    return files


def run_baseline(ffmpeg: str, files: list[Path], out: Path, workers: int) -> float:
    out.mkdir(parents=True, exist_ok=True)
    args = " ".join(PRESETS["mp3"].args)
    script = (
        f'exec "$0" -hide_banner -nostdin -loglevel error -y -i "$2" {args} "$1/$(basename "$2" .mp4).mp3"'
    )
    started = time.perf_counter()
    subprocess.run(
        ["xargs", "-0", "-P", str(workers), "-n", "1", "sh", "-c", script, ffmpeg, str(out)],
        input=b"\0".join(str(f).encode() for f in files),
        check=True,
    )
    return time.perf_counter() - started


def run_ours(files: list[Path], out: Path, workers: int, ffmpeg: str) -> float:
    started = time.perf_counter()
    with TranscodeSession(LocalConfig(workers=workers, ffmpeg=ffmpeg)) as s:
        report = s.convert(files, output_dir=out, preset="mp3")
    elapsed = time.perf_counter() - started
    report.raise_for_failures()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--files", type=int, default=24)
    parser.add_argument("--seconds", type=int, default=60, help="length of each sample")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    ffmpeg = find_ffmpeg()
    with tempfile.TemporaryDirectory(prefix="bt-bench-") as tmp:
        root = Path(tmp)
        files = generate(ffmpeg, root, args.files, args.seconds)
        ours, base = [], []
        for r in range(args.rounds):
            # Alternate which goes first so neither always gets the warm cache.
            order = ("ours", "base") if r % 2 == 0 else ("base", "ours")
            for which in order:
                out = root / f"out-{which}-{r}"
                if which == "ours":
                    ours.append(run_ours(files, out, args.workers, ffmpeg))
                else:
                    base.append(run_baseline(ffmpeg, files, out, args.workers))
                shutil.rmtree(out)
        o, b = statistics.median(ours), statistics.median(base)
        print(f"files={args.files} x {args.seconds}s  workers={args.workers}  rounds={args.rounds}")
        print(f"ours      median {o:7.2f}s  runs {', '.join(f'{x:.2f}' for x in ours)}")
        print(f"xargs -P  median {b:7.2f}s  runs {', '.join(f'{x:.2f}' for x in base)}")
        print(f"ratio ours/baseline = {o / b:.3f}  (target <= 1.05)")


if __name__ == "__main__":
    main()
