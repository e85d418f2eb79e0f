"""Several outputs per input: one ffmpeg pass writing N outputs vs N separate conversions.

Generates talk-like sample videos (320x240 test pattern, a tone whose level swings
20 dB every second), then, alternating the order each round:

- local backend: ``convert(preset=["mp3", "opus", "thumbnail"])`` once vs ``convert``
  once per preset; and ``convert(preset="mp3")`` alone, to measure what each extra
  output adds to a pass (``_plan.EXTRA_OUTPUT_SHARE``);
- OfflineAzure (Azurite + the Batch emulator, tasks executed for real): the same,
  with the bytes staged (counted from the sizes of the files): uploaded by the client,
  input bytes fetched by the nodes (one resource file per task), output bytes downloaded;
- loudness: single-pass loudnorm to -16 and -23 LUFS on three kinds of audio, every
  output measured with ffmpeg's ebur128 filter: the achieved loudness and its spread.

Prints medians and ratios (separate / one pass).

    .venv/bin/python benchmarks/outputs.py [--files 6] [--seconds 20] [--rounds 3]
        [--no-azure] [--no-loudness]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from _common import children_cpu  # this folder is on sys.path when a script runs

from batch_transcode import PRESETS, LocalConfig, Preset, TranscodeSession
from batch_transcode._ffmpeg import find_ffmpeg

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from helpers import integrated_loudness  # shared with the tests

PRESET_NAMES = ["mp3", "opus", "thumbnail"]

#: Audio for the loudness figures: a steady tone, a talk-like 20 dB swing, pink noise bursts.
AUDIO_KINDS = {
    "steady tone": "sine=frequency=440:sample_rate=44100",
    "20 dB swing": "aevalsrc=0.01*(1+9*mod(floor(t)\\,2))*sin(2*PI*220*t):s=44100",
    "noise bursts": (
        "anoisesrc=color=pink:amplitude=0.3:sample_rate=44100,volume='if(lt(mod(t,4),1),1,0.05)':eval=frame"
    ),
}


def generate(ffmpeg: str, path: Path, seconds: int, audio: str = AUDIO_KINDS["20 dB swing"]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
         "-f", "lavfi", "-i", f"testsrc=duration={seconds}:size=320x240:rate=25",
         "-f", "lavfi", "-t", str(seconds), "-i", audio,
         "-c:v", "mpeg4", "-c:a", "aac", "-b:a", "128k", "-shortest", str(path)],
        check=True,
    )  # fmt: skip
    return path


def timed(session: TranscodeSession, files: list[Path], out: Path, runs: Sequence[Any]) -> float:
    """Seconds to convert ``files`` once per preset spec of ``runs``, one after another."""
    return timed_cpu(session, files, out, runs)[0]


def timed_cpu(
    session: TranscodeSession, files: list[Path], out: Path, runs: Sequence[Any]
) -> tuple[float, float]:
    """Wall seconds, and CPU seconds of the ffmpeg processes (local backend: our children),
    to convert ``files`` once per preset spec of ``runs``, one after another. The CPU
    figure barely moves when other work shares the machine; the wall time does."""
    started, cpu = time.perf_counter(), children_cpu()
    for preset in runs:
        session.convert(files, output_dir=out, preset=preset, skip_existing=False).raise_for_failures()
    return time.perf_counter() - started, children_cpu() - cpu


def fmt(values: Sequence[float]) -> str:
    return f"median {statistics.median(values):7.2f}s  runs {', '.join(f'{v:.2f}' for v in values)}"


def bench_local(files: list[Path], root: Path, rounds: int, workers: int) -> None:
    runs: dict[str, Sequence[Any]] = {
        "one pass, 3 outputs": [PRESET_NAMES],
        "3 separate conversions": PRESET_NAMES,
        "one pass, mp3 + opus": [["mp3", "opus"]],
        "one pass, mp3 + thumb at 50%": [["mp3", Preset.thumbnail(fraction=0.5)]],
        "mp3 alone (1 output)": ["mp3"],
    }
    times: dict[str, list[float]] = {k: [] for k in runs}
    cpu: dict[str, list[float]] = {k: [] for k in runs}
    with TranscodeSession(LocalConfig(workers=workers)) as s:
        for r in range(rounds):
            order = list(runs) if r % 2 == 0 else list(reversed(runs))
            for n, which in enumerate(order):
                out = root / f"local-{n}-{r}"
                wall, used = timed_cpu(s, files, out, runs[which])
                times[which].append(wall)
                cpu[which].append(used)
                shutil.rmtree(out)
    print(f"local backend, {len(files)} files, workers={workers}, rounds={rounds}")
    for which, values in times.items():
        print(f"  {which:29}{fmt(values)}   ffmpeg CPU median {statistics.median(cpu[which]):6.2f}s")
    for label, per in (("wall", times), ("ffmpeg CPU", cpu)):
        med = {k: statistics.median(v) for k, v in per.items()}
        one, m = med["one pass, 3 outputs"], med["mp3 alone (1 output)"]
        opus = med["one pass, mp3 + opus"]
        print(
            f"  {label}: separate / one pass = {med['3 separate conversions'] / one:.2f}; "
            f"opus in the mp3 pass adds {(opus - m) / m:.0%}, the thumbnail then {(one - opus) / m:.0%}"
        )


def bench_azure(files: list[Path], root: Path, rounds: int) -> None:
    from batch_transcode.testing import OfflineAzure

    input_bytes = sum(f.stat().st_size for f in files)
    one: list[float] = []
    sep: list[float] = []
    staged: dict[str, tuple[int, int, int]] = {}
    with OfflineAzure() as oa:
        for r in range(rounds):
            for which in ["one", "sep"] if r % 2 == 0 else ["sep", "one"]:
                out = root / f"azure-{which}-{r}"
                # a fresh session per measurement: its containers start empty
                with TranscodeSession(oa.config(dedicated_nodes=1, task_slots_per_node=2)) as s:
                    if which == "one":
                        one.append(timed(s, files, out, [PRESET_NAMES]))
                        tasks = len(files)
                    else:
                        sep.append(timed(s, files, out, PRESET_NAMES))
                        tasks = len(files) * len(PRESET_NAMES)
                # From the files: the session uploads each input once (its later runs skip
                # unchanged inputs), each task fetches its input, every output is downloaded.
                staged[which] = (
                    input_bytes,
                    tasks * input_bytes // len(files),
                    sum(p.stat().st_size for p in out.rglob("*") if p.is_file()),
                )
                shutil.rmtree(out)
    o, p = statistics.median(one), statistics.median(sep)
    print(f"OfflineAzure (1 node x 2 slots), {len(files)} files of {input_bytes / len(files) / 1e6:.2f} MB")
    print(f"  one pass, 3 outputs     {fmt(one)}")
    print(f"  3 separate conversions  {fmt(sep)}")
    print(f"  ratio separate / one pass = {p / o:.2f}")
    for which, label in (("one", "one pass"), ("sep", "separate")):
        up, fetched, down = staged[which]
        total = up + fetched + down
        print(
            f"  bytes staged, {label:9}: uploaded {up / 1e6:6.2f} MB, fetched by nodes "
            f"{fetched / 1e6:6.2f} MB, downloaded {down / 1e6:5.2f} MB, total {total / 1e6:6.2f} MB"
        )
    totals = {k: sum(v) for k, v in staged.items()}
    print(f"  ratio bytes separate / one pass = {totals['sep'] / totals['one']:.2f}")


def bench_loudness(ffmpeg: str, root: Path, seconds: int) -> None:
    print(f"loudness, single-pass loudnorm, {seconds} s clips, measured with ebur128 on the outputs")
    deltas: list[float] = []
    with TranscodeSession(LocalConfig(workers=2)) as s:
        for kind, audio in AUDIO_KINDS.items():
            source = generate(ffmpeg, root / "loud" / f"{kind}.mp4", seconds, audio)
            before = integrated_loudness(ffmpeg, source)
            for target in (-16.0, -23.0):
                presets = [PRESETS[n].with_audio(loudness=target) for n in ("mp3", "opus", "aac")]
                report = s.convert([source], output_dir=root / "loud" / f"out{target:g}", preset=presets)
                report.raise_for_failures()
                measured = [integrated_loudness(ffmpeg, p) for p in report[0].outputs]
                deltas += [m - target for m in measured]
                pairs = zip(report[0].outputs, measured, strict=True)
                shown = ", ".join(f"{p.suffix[1:]} {m:6.1f}" for p, m in pairs)
                print(f"  {kind:12} input {before:6.1f} LUFS -> target {target:5.1f}: {shown}")
    print(
        f"  achieved - target: min {min(deltas):+.1f} LU, max {max(deltas):+.1f} LU, "
        f"worst |delta| {max(abs(d) for d in deltas):.1f} LU over {len(deltas)} outputs"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--files", type=int, default=6)
    parser.add_argument("--seconds", type=int, default=20, help="length of each sample")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--no-azure", action="store_true", help="skip the OfflineAzure part")
    parser.add_argument("--no-loudness", action="store_true", help="skip the loudness part")
    args = parser.parse_args()
    ffmpeg = find_ffmpeg()
    with tempfile.TemporaryDirectory(prefix="bt-bench-outputs-") as tmp:
        root = Path(tmp)
        template = generate(ffmpeg, root / "template.mp4", args.seconds)
        files = []
        for i in range(args.files):
            path = root / "in" / f"talk {i:02d}.mp4"
            path.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(template, path)
            files.append(path)
        bench_local(files, root, args.rounds, args.workers)
        if not args.no_azure:
            bench_azure(files, root, args.rounds)
        if not args.no_loudness:
            bench_loudness(ffmpeg, root, args.seconds)


if __name__ == "__main__":
    main()
