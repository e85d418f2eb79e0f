"""Renditions: three H.264 sizes of each input in one ffmpeg run vs three separate conversions.

Generates N clips of 1080p video (lavfi ``testsrc2`` at 25 fps, a 440 Hz tone; H.264
``veryfast`` CRF 18 + AAC), then converts them to ``h264-1080p``, ``h264-720p`` and
``h264-480p`` (``--speed`` sets the x264 preset of all three, the same on both sides):

- local backend: ``convert(preset=[the three])`` once (one decode, a ``split`` into three
  scale chains and encoders) vs ``convert(preset=p)`` once per preset; wall time and the
  CPU of the ffmpeg processes (``getrusage(RUSAGE_CHILDREN)`` deltas: our children),
  beside what ``plan()`` estimates for both (its table: ``_video_cost.py``);
- OfflineAzure (Azurite + the Batch emulator, tasks executed for real): one session and
  one run vs three sessions of one run each (as three ``batch-transcode convert``
  commands would be); wall time of the runs, and bytes counted from the files' sizes:
  inputs uploaded once per session, fetched by a node once per task, outputs downloaded.

Prints medians and ratios one run / separate.

    .venv/bin/python benchmarks/renditions.py [--files 4] [--seconds 10] [--rounds 1]
        [--speed medium] [--workers 2] [--no-azure] [--no-local]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from _common import children_cpu, testsrc2_clip  # this folder is on sys.path when a script runs

from batch_transcode import LocalConfig, Preset, TranscodeSession
from batch_transcode._presets import PresetSpec

HEIGHTS = (1080, 720, 480)


def generate(ffmpeg: str, path: Path, seconds: float) -> Path:
    return testsrc2_clip(ffmpeg, path, seconds, 1920, 1080)


def check_heights(outputs: list[Path], presets: list[Preset], count: int) -> None:
    """Every output is there, at its preset's height (no rendition overwrote another)."""
    from batch_transcode._ffmpeg import find_ffmpeg, probe_input

    ffmpeg = find_ffmpeg()
    assert len(outputs) == count * len(presets), sorted(p.name for p in outputs)
    for path in outputs:
        size = probe_input(ffmpeg, str(path)).video_size
        wanted = [p.max_height for p in presets if p.name in path.name or path.parent.name == p.name]
        assert size is not None, path
        assert wanted, path
        assert size[1] == wanted[-1], (path, size, wanted)


def tree_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def convert(session: TranscodeSession, files: list[Path], out: Path, preset: PresetSpec) -> None:
    report = session.convert(files, output_dir=out, preset=preset, skip_existing=False)
    report.raise_for_failures()


def bench_local(files: list[Path], presets: list[Preset], root: Path, rounds: int, workers: int) -> None:
    """Print the local figures, and plan()'s estimates of the CPU."""
    one_wall: list[float] = []
    one_cpu: list[float] = []
    sep_wall: list[float] = []
    sep_cpu: dict[str, list[float]] = {p.name: [] for p in presets}
    with TranscodeSession(LocalConfig(workers=workers)) as s:
        for r in range(rounds):
            for which in ("one", "sep") if r % 2 == 0 else ("sep", "one"):
                if which == "one":
                    out = root / f"local-one-{r}"
                    started, cpu = time.perf_counter(), children_cpu()
                    convert(s, files, out, presets)
                    one_wall.append(time.perf_counter() - started)
                    one_cpu.append(children_cpu() - cpu)
                    check_heights(list(out.iterdir()), presets, len(files))
                else:
                    started = time.perf_counter()
                    for p in presets:
                        cpu = children_cpu()
                        convert(s, files, root / f"local-sep-{r}" / p.name, p)
                        sep_cpu[p.name].append(children_cpu() - cpu)
                    sep_wall.append(time.perf_counter() - started)
                shutil.rmtree(root / f"local-{which}-{r}")
    alone = {name: statistics.median(v) for name, v in sep_cpu.items()}
    one, sep = statistics.median(one_cpu), sum(alone.values())
    wall_one, wall_sep = statistics.median(one_wall), statistics.median(sep_wall)
    with TranscodeSession(LocalConfig(workers=workers)) as s:
        plan_one = s.plan(files, preset=presets).cpu_seconds
        plan_alone = {p.name: s.plan(files, preset=p).cpu_seconds for p in presets}
    plan_sep = sum(plan_alone.values())
    print(f"local backend, {len(files)} files, workers={workers}, rounds={rounds} (medians)")
    print(f"  one run, 3 outputs        wall {wall_one:7.2f} s   ffmpeg CPU {one:7.2f} s")
    print(f"  3 separate conversions    wall {wall_sep:7.2f} s   ffmpeg CPU {sep:7.2f} s")
    print("    CPU of each alone: " + ", ".join(f"{n} {c:.2f} s" for n, c in alone.items()))
    print(f"  ratio one run / separate: wall {wall_one / wall_sep:.2f}, CPU {one / sep:.2f}")
    print(
        f"  plan() estimates CPU {plan_one:.2f} s one run ({plan_one / one:.2f} x measured), "
        f"{plan_sep:.2f} s separate ({plan_sep / sep:.2f} x), ratio {plan_one / plan_sep:.2f}"
    )
    print("    plan() alone: " + ", ".join(f"{n} {c:.2f} s" for n, c in plan_alone.items()))


def bench_azure(files: list[Path], presets: list[Preset], root: Path, rounds: int) -> None:
    from batch_transcode.testing import OfflineAzure

    input_bytes = sum(f.stat().st_size for f in files)
    walls: dict[str, list[float]] = {"one": [], "sep": []}
    moved: dict[str, tuple[int, int, int]] = {}
    with OfflineAzure() as oa:
        for r in range(rounds):
            for which in ("one", "sep") if r % 2 == 0 else ("sep", "one"):
                out = root / f"azure-{which}-{r}"
                runs: list[tuple[str, PresetSpec]] = (
                    [("all", presets)] if which == "one" else [(p.name, p) for p in presets]
                )
                elapsed = 0.0
                for label, spec in runs:
                    # a session per run, as separate commands would be: its containers start empty
                    with TranscodeSession(oa.config(dedicated_nodes=1, task_slots_per_node=2)) as s:
                        started = time.perf_counter()
                        convert(s, files, out / label, spec)
                        elapsed += time.perf_counter() - started
                walls[which].append(elapsed)
                check_heights([p for p in out.rglob("*") if p.is_file()], presets, len(files))
                # From the files: each session uploads each input once; each task fetches
                # its input to the node; every output is downloaded.
                moved[which] = (len(runs) * input_bytes, len(runs) * input_bytes, tree_bytes(out))
                shutil.rmtree(out)
    one, sep = statistics.median(walls["one"]), statistics.median(walls["sep"])
    print(
        f"OfflineAzure (1 node x 2 slots), {len(files)} files of {input_bytes / len(files) / 1e6:.2f} MB, "
        f"rounds={rounds} (medians)"
    )
    print(f"  one run, 3 outputs ({len(files)} tasks)          wall {one:7.2f} s")
    print(f"  3 separate conversions ({3 * len(files)} tasks)     wall {sep:7.2f} s")
    for which, label in (("one", "one run"), ("sep", "separate")):
        up, fetched, down = moved[which]
        print(
            f"  bytes, {label:8}: uploaded {up / 1e6:6.2f} MB, fetched by nodes {fetched / 1e6:6.2f} MB, "
            f"downloaded {down / 1e6:6.2f} MB, total {(up + fetched + down) / 1e6:6.2f} MB"
        )
    totals = {k: sum(v) for k, v in moved.items()}
    print(f"  ratio one run / separate: wall {one / sep:.2f}, bytes {totals['one'] / totals['sep']:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--files", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each clip")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--speed", default="medium", help="x264 preset of the three renditions")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--no-local", action="store_true", help="skip the local part")
    parser.add_argument("--no-azure", action="store_true", help="skip the OfflineAzure part")
    args = parser.parse_args()
    from batch_transcode._ffmpeg import find_ffmpeg

    ffmpeg = find_ffmpeg()
    presets = [Preset.video(codec="h264", height=h, speed=args.speed) for h in HEIGHTS]
    print(
        f"# {len(presets)} renditions ({', '.join(p.name for p in presets)}, x264 {args.speed}) of "
        f"{args.files} x {args.seconds:g} s 1080p clips; {os.cpu_count()} cores (nproc)",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="bt-bench-renditions-") as tmp:
        root = Path(tmp)
        template = generate(ffmpeg, root / "template.mp4", args.seconds)
        files = []
        for i in range(args.files):
            path = root / "in" / f"clip {i:02d}.mp4"
            path.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(template, path)
            files.append(path)
        if not args.no_local:
            bench_local(files, presets, root, args.rounds, args.workers)
        if not args.no_azure:
            bench_azure(files, presets, root, args.rounds)


if __name__ == "__main__":
    main()
