"""Long inputs split at keyframes: one task per segment vs one task for the whole file.

Generates a 720p clip of ``--minutes`` (default 10) with a scene change every 7-23 s
(lavfi ``testsrc2``, ``mandelbrot``, ``life``, ``cellauto``, ``smptehdbars`` and
``gradients`` in turn, a 440 Hz tone; H.264 ``veryfast`` with x264's default keyframes:
at scene cuts and at least every 10 s), then converts it on OfflineAzure (Azurite and the
Batch emulator, tasks executed for real) to ``h264-720p`` (``--speed``: the x264 preset)
on one node with one task slot, so tasks run one at a time and never share the cores:

- whole: ``convert(...)`` (one task);
- split: ``convert(..., segment_seconds=--segment)`` (a task per segment, the audio
  once, the stitch; its output checked frame-exact before delivery).

Prints, from each task's start and end as the Batch API reports them and the CPU of the
task processes (``getrusage(RUSAGE_CHILDREN)`` deltas over each run: the emulator runs
tasks as this process's children):

- critical path / whole task: (keyframe read + longest segment task + stitch task) /
  the whole task's time: what a pool with a slot per segment would wait for;
- CPU of all tasks / CPU of the whole task: what splitting costs in all;

both from the tasks' own commands run here one at a time (wall time and the CPU of
each process: on a busy machine CPU is the steadier figure), and from the OfflineAzure
runs (task times as the Batch API reports them; CPU of each run's tasks in all);
- VMAF of the stitched output minus VMAF of the whole encode (libvmaf, both against the
  source at the same settings);
- the mixed folder of the issue (one 120-minute recording and 100 five-minute clips on
  16 slots), scaled down, with the makespan the plan predicts with and without splitting
  (:func:`batch_transcode._segments.makespan`, a keyframe everywhere).

    .venv/bin/python benchmarks/long_inputs.py [--minutes 10] [--segment 30] [--speed medium]
        [--no-vmaf]

On 2 shared cores the figures are indicative: the emulator, Azurite and the client share
them with the encodes, and the task times include the emulator's per-task overhead
(fetching the input through Azurite, uploading the pieces).
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import time
from pathlib import Path

from _common import children_cpu  # this folder is on sys.path when a script runs

from batch_transcode import Preset, TranscodeSession
from batch_transcode._ffmpeg import find_ffmpeg
from batch_transcode._quality import measure
from batch_transcode._segments import makespan, read_keyframes

SOURCES = [
    "testsrc2=size=1280x720:rate=25",
    "mandelbrot=size=1280x720:rate=25",
    "life=size=1280x720:rate=25:mold=10:ratio=0.1:death_color=#C83232:life_color=#00ff00",
    "cellauto=size=1280x720:rate=25:rule=110",
    "smptehdbars=size=1280x720:rate=25",
    "gradients=size=1280x720:rate=25:speed=0.05",
]


def generate(ffmpeg: str, path: Path, seconds: float) -> Path:
    """A 720p clip of ``seconds`` with a scene change every 7-23 s, and a tone."""
    scenes: list[str] = []
    at, n = 0.0, 0
    while at < seconds:
        length = min(7 + (n * 11) % 17, seconds - at)
        scenes.append(
            f"{SOURCES[n % len(SOURCES)]},trim=duration={length:g},setpts=PTS-STARTPTS,format=yuv420p[v{n}]"
        )
        at, n = at + length, n + 1
    graph = ";".join(scenes) + ";" + "".join(f"[v{k}]" for k in range(n)) + f"concat=n={n}:v=1:a=0[v]"
    subprocess.run(
        [ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
         "-filter_complex", graph, "-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}",
         "-map", "[v]", "-map", "0:a", "-c:v", "libx264", "-preset", "veryfast", "-crf", "20",
         "-c:a", "aac", "-b:a", "128k", str(path)],
        check=True, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    return path


def task_times(oa: object, job_id: str) -> dict[str, float]:
    """Each task's run time (end - start, seconds) as the Batch API reports it."""
    from azure.batch import BatchClient
    from azure.core.credentials import AzureNamedKeyCredential

    emulator = oa.batch  # type: ignore[attr-defined]
    client = BatchClient(emulator.endpoint, AzureNamedKeyCredential(emulator.account, emulator.key))  # type: ignore[arg-type]
    times = {}
    for task in client.list_tasks(job_id):
        info = task.execution_info
        if info is not None and info.start_time and info.end_time:
            times[task.id or ""] = (info.end_time - info.start_time).total_seconds()
    return times


def run(
    oa: object, source: Path, out: Path, preset: Preset, segment: float | None
) -> tuple[dict[str, float], float]:
    """Convert ``source`` on one slot; each task's time and the CPU of all of them."""
    config = oa.config(dedicated_nodes=1, task_slots_per_node=1, session_timeout=7200, task_timeout=7200)  # type: ignore[attr-defined]
    with TranscodeSession(config) as session:
        cpu = children_cpu()
        report = session.convert([source], output_dir=out, preset=preset, segment_seconds=segment)
        cpu = children_cpu() - cpu
        report.raise_for_failures()
        times = task_times(oa, f"{session.session_id}-job")
    return times, cpu


def timed(argv: list[str]) -> tuple[float, float]:
    """Run ``argv``; its wall time and CPU (user + system) in seconds."""
    cpu, wall = children_cpu(), time.monotonic()
    subprocess.run(argv, check=True, stdin=subprocess.DEVNULL)
    return time.monotonic() - wall, children_cpu() - cpu


def local_tasks(
    ffmpeg: str, source: Path, folder: Path, preset: Preset, segment: float
) -> dict[str, tuple[float, float]]:
    """The split's tasks and the whole encode run here one at a time, with the commands
    the tasks run (the one command builder): each one's wall time and CPU."""
    from batch_transcode._commands import (
        audio_once_argv,
        audio_preset,
        concat_list,
        ffmpeg_argv,
        segment_argv,
        stitch_argv,
    )
    from batch_transcode._split import plan_split

    folder.mkdir()
    plan = plan_split(source, [preset], segment)
    assert plan is not None, "the source is too short to split"
    out: dict[str, tuple[float, float]] = {}
    out["whole"] = timed(ffmpeg_argv(ffmpeg, str(source), [(str(folder / "whole.mp4"), preset)]))
    for s in plan.schedule():
        piece = str(folder / f"s{s.index}.mp4")
        out[f"segment {s.index}"] = timed(segment_argv(ffmpeg, str(source), [(piece, preset)], s))
    audio = audio_preset(preset)
    assert audio is not None
    out["audio"] = timed(audio_once_argv(ffmpeg, str(source), [(str(folder / "audio.mp4"), audio)]))
    (folder / "list.txt").write_text(concat_list([(f"s{s.index}.mp4", s.duration) for s in plan.segments]))
    listing, stitched = str(folder / "list.txt"), str(folder / "stitched.mp4")
    out["stitch"] = timed(stitch_argv(ffmpeg, listing, str(folder / "audio.mp4"), stitched, preset))
    return out


def report_local(tasks: dict[str, tuple[float, float]], keyframe_read: float) -> None:
    whole_wall, whole_cpu = tasks.pop("whole")
    segments = [v for k, v in tasks.items() if k.startswith("segment")]
    for n, what in ((0, "wall"), (1, "CPU")):
        whole = whole_cpu if n else whole_wall
        longest = max(s[n] for s in segments)
        critical = keyframe_read + longest + tasks["stitch"][n]
        total = sum(v[n] for v in tasks.values())
        print(
            f"  by {what}: whole {whole:.1f} s; longest segment {longest:.1f} s, "
            f"stitch {tasks['stitch'][n]:.2f} s, audio {tasks['audio'][n]:.2f} s; "
            f"critical path / whole task {critical / whole:.3f}; all tasks / whole task {total / whole:.3f}"
        )


def vmaf(ffmpeg: str, source: Path, output: Path) -> float:
    return measure(ffmpeg, source, output, "vmaf", threads=2)["vmaf"].mean


def mixed_folder(segment_minutes: float) -> None:
    """The issue's folder: one 2-hour recording and 100 five-minute clips on 16 slots."""
    files = {"recording": 120.0, **{f"clip{n}": 5.0 for n in range(100)}}
    slots = 16
    whole = makespan(files, slots)
    split = makespan(files, slots, segment_minutes)
    ideal = sum(files.values()) / slots
    print(
        f"mixed folder (1 x 120 min + 100 x 5 min, {slots} slots, {segment_minutes * 60:g} s segments): "
        f"makespan {whole:.0f} min whole, {split:.1f} min split (ideal {ideal:.1f}); "
        f"utilisation {ideal / whole:.0%} -> {ideal / split:.0%}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--segment", type=float, default=30.0, help="segment seconds")
    parser.add_argument("--speed", default="medium", help="x264 preset of the encodes")
    parser.add_argument("--no-vmaf", action="store_true")
    args = parser.parse_args()
    from batch_transcode.testing import OfflineAzure

    ffmpeg = find_ffmpeg()
    preset = Preset.video(codec="h264", height=720, speed=args.speed, name="h264-720p")
    with tempfile.TemporaryDirectory(prefix="bt-long-") as tmp, OfflineAzure() as oa:
        root = Path(tmp)
        started = time.monotonic()
        source = generate(ffmpeg, root / "long.mp4", args.minutes * 60)
        print(f"source: {args.minutes:g} min 720p, generated in {time.monotonic() - started:.0f} s")
        started = time.monotonic()
        index = read_keyframes(source)
        keyframe_read = time.monotonic() - started
        whole_times, whole_cpu = run(oa, source, root / "whole", preset, None)
        split_times, split_cpu = run(oa, source, root / "split", preset, args.segment)
        (whole_task,) = whole_times.values()
        segments = [t for tid, t in split_times.items() if "-s" in tid]
        stitch = next(t for tid, t in split_times.items() if "-" not in tid)
        audio = sum(t for tid, t in split_times.items() if tid.endswith("-a"))
        critical = keyframe_read + max(segments) + stitch
        print(f"keyframes: {len(index.keyframes)} read in {keyframe_read:.2f} s")
        print("each task alone, here, one at a time (the tasks' own commands):")
        report_local(local_tasks(ffmpeg, source, root / "local", preset, args.segment), keyframe_read)
        print("on OfflineAzure, one node with one slot:")
        print(
            f"whole task {whole_task:.1f} s; split: {len(segments)} segments (longest {max(segments):.1f} s, "
            f"sum {sum(segments):.1f} s), audio {audio:.1f} s, stitch {stitch:.1f} s"
        )
        print(f"critical path / whole task: {critical / whole_task:.3f}")
        print(
            f"CPU of all tasks / CPU of the whole task: {split_cpu / whole_cpu:.3f} "
            f"({split_cpu:.0f} s / {whole_cpu:.0f} s)"
        )
        if not args.no_vmaf:
            whole_vmaf = vmaf(ffmpeg, source, root / "whole" / "long.mp4")
            split_vmaf = vmaf(ffmpeg, source, root / "split" / "long.mp4")
            print(
                f"VMAF stitched - whole: {split_vmaf - whole_vmaf:+.3f} "
                f"({split_vmaf:.2f} vs {whole_vmaf:.2f})"
            )
    mixed_folder(args.segment / 60)


if __name__ == "__main__":
    main()
