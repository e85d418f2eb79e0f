"""Video cost: seconds of CPU per second of media, for each codec of the video presets and
each audio preset, at a few source sizes.

Generates one source per height (lavfi ``testsrc2`` at 16:9 and 25 fps, a 440 Hz tone;
H.264 ``veryfast`` CRF 18 and AAC, as a camera or an editor might hand them over), then
converts each with the command the library builds (``_commands.ffmpeg_argv``) for:

- each video codec at its default speed and CRF, uncapped (``Preset.video(codec=...)``):
  the output keeps the source's height, so the row ``("h264", 720)`` is what
  ``h264-720p`` costs on a 720p source;
- a decode of the video alone (``-f null``): the row ``("decode", 1080)`` is what a
  larger source adds (a 1080p source's decode, less a 720p one's, for ``h264-720p``), and
  what renditions of one source share (it is decoded once for all of them);
- each audio preset (``mp3``, ``aac``, ``opus``, ``flac``, ``wav``), which demuxes the
  video but never decodes it.

CPU is user + system time of the ffmpeg child (``getrusage(RUSAGE_CHILDREN)`` deltas),
which moves far less than wall time when other work shares the machine; ffmpeg runs
with its default threads (all cores). Prints a markdown table and a dict literal to paste
into ``src/batch_transcode/_video_cost.py``; the header comment names the ffmpeg and the
machine. ``testsrc2`` is easier to encode than camera footage (flat colours, little
noise): pass ``--source FILE`` (any height; repeatable) to measure your own media.

    .venv/bin/python benchmarks/video_cost.py [--seconds 10] [--heights 480 720 1080]
        [--rounds 1] [--codecs h264 hevc av1 vp9] [--audio mp3 ...] [--no-decode]
        [--source FILE ...]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import children_cpu, testsrc2_clip  # this folder is on sys.path when a script runs

from batch_transcode import PRESETS, Preset
from batch_transcode._commands import ffmpeg_argv
from batch_transcode._ffmpeg import find_ffmpeg, probe_input
from batch_transcode._presets import VIDEO_CODECS

AUDIO_PRESETS = ["mp3", "aac", "opus", "flac", "wav"]
#: 16:9 frame widths of the generated sources (even, as 4:2:0 needs).
WIDTHS = {360: 640, 480: 854, 720: 1280, 1080: 1920, 1440: 2560, 2160: 3840}


def generate(ffmpeg: str, path: Path, height: int, seconds: float) -> Path:
    return testsrc2_clip(ffmpeg, path, seconds, WIDTHS.get(height, (height * 16 // 9) // 2 * 2), height)


def argv_of(ffmpeg: str, source: Path, preset: Preset | None, out: Path) -> list[str]:
    """The library's command converting ``source`` with ``preset``; for ``None``, a
    decode of its first video stream alone (to the null muxer)."""
    if preset is None:
        return [ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error", "-i", f"file:{source}",
                "-map", "0:V:0", "-f", "null", "-"]  # fmt: skip
    return ffmpeg_argv(ffmpeg, str(source), [(str(out), preset)])


def measure(argv: list[str], out: Path) -> tuple[float, float]:
    """CPU seconds and wall seconds of one ffmpeg run."""
    env = {**os.environ, "SVT_LOG": "1"}  # SVT-AV1 logs on its own; errors only
    started, cpu = time.perf_counter(), children_cpu()
    subprocess.run(argv, check=True, stdin=subprocess.DEVNULL, env=env)
    wall, used = time.perf_counter() - started, children_cpu() - cpu
    out.unlink(missing_ok=True)
    return used, wall


def ffmpeg_version(ffmpeg: str) -> str:
    first = subprocess.run(
        [ffmpeg, "-hide_banner", "-version"], capture_output=True, text=True, check=True
    ).stdout.splitlines()[0]
    return first.split(" Copyright")[0]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each generated source")
    parser.add_argument("--heights", type=int, nargs="+", default=[480, 720, 1080])
    parser.add_argument("--rounds", type=int, default=1, help="conversions per cell (median)")
    parser.add_argument("--codecs", nargs="*", default=list(VIDEO_CODECS), choices=list(VIDEO_CODECS))
    parser.add_argument("--audio", nargs="*", default=AUDIO_PRESETS, choices=AUDIO_PRESETS)
    parser.add_argument(
        "--decode", action=argparse.BooleanOptionalAction, default=True, help="measure a decode alone"
    )
    parser.add_argument("--source", type=Path, action="append", help="your own media instead")
    args = parser.parse_args()
    ffmpeg = find_ffmpeg()
    presets: dict[str, Preset | None] = {c: Preset.video(codec=c) for c in args.codecs}
    presets |= {name: PRESETS[name] for name in args.audio}
    if args.decode:
        presets["decode"] = None
    cells: dict[tuple[str, int], float] = {}
    walls: dict[tuple[str, int], float] = {}
    with tempfile.TemporaryDirectory(prefix="bt-bench-video-cost-") as tmp:
        root = Path(tmp)
        sources: list[tuple[int, float, Path]] = []
        for path in args.source or []:
            info = probe_input(ffmpeg, str(path))
            if info.duration is None or info.video_size is None:
                sys.exit(f"{path}: no duration or video size in its header")
            sources.append((info.video_size[1], info.duration, path))
        if not args.source:
            for height in args.heights:
                path = generate(ffmpeg, root / f"src-{height}p.mp4", height, args.seconds)
                sources.append((height, args.seconds, path))
        for height, seconds, source in sources:
            for key, preset in presets.items():
                out = root / f"out.{preset.extension if preset else 'null'}"
                runs = [measure(argv_of(ffmpeg, source, preset, out), out) for _ in range(args.rounds)]
                cpu = statistics.median(r[0] for r in runs) / seconds
                wall = statistics.median(r[1] for r in runs) / seconds
                cells[key, height], walls[key, height] = cpu, wall
                print(
                    f"  {key:5} {height:5}p  {cpu:7.3f} CPU s / media s  ({wall:.3f} wall)", file=sys.stderr
                )
    heights = sorted({h for _, h in cells})
    what = "your sources" if args.source else f"testsrc2 + sine, {args.seconds:g} s per source"
    header = (
        f"# {ffmpeg_version(ffmpeg)}; {os.cpu_count()} cores (nproc), {platform.machine()}\n"
        f"# {what}; median of {args.rounds}"
    )
    print(header)
    print()
    print("| preset | " + " | ".join(f"{h}p" for h in heights) + " |")
    print("|---|" + "---|" * len(heights))
    for key, preset in presets.items():
        label = key if preset is None or not preset.is_video else f"{key} (speed {preset.speed})"
        label = "decode (video alone)" if preset is None else label
        row = [f"{cells[key, h]:.3f}" if (key, h) in cells else "" for h in heights]
        print(f"| {label} | " + " | ".join(row) + " |")
    print()
    print("(CPU seconds per second of media; wall seconds per media second:")
    print(" " + ", ".join(f"{k} {h}p {w:.2f}" for (k, h), w in walls.items()) + ")")
    print()
    print(header)
    print("CPU_SECONDS_PER_MEDIA_SECOND: dict[tuple[str, int], float] = {")
    for key in presets:
        row = " ".join(f'("{key}", {h}): {cells[key, h]:.4g},' for h in heights if (key, h) in cells)
        print(f"    {row}")
    print("}")


if __name__ == "__main__":
    main()
