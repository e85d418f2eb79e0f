"""Sample media for demos, docs and tests, generated with ffmpeg's own test sources."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from batch_transcode._ffmpeg import find_ffmpeg

__all__ = ["decoded_duration", "make_sample_media"]


def make_sample_media(
    directory: str | os.PathLike[str],
    count: int = 4,
    *,
    seconds: float = 2.0,
    audio: bool = True,
    ffmpeg: str | os.PathLike[str] | None = None,
) -> list[Path]:
    """Write ``count`` short MP4 videos (test pattern, plus a sine tone unless
    ``audio=False``) named ``sample 01.mp4``... into ``directory``; return their paths."""
    exe = find_ffmpeg(ffmpeg)
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    made = []
    for i in range(count):
        path = root / f"sample {i + 1:02d}.mp4"
        args = [exe, "-hide_banner", "-nostdin", "-loglevel", "error", "-y"]
        args += ["-f", "lavfi", "-i", f"testsrc=duration={seconds}:size=160x120:rate=10"]
        if audio:
            args += ["-f", "lavfi", "-i", f"sine=frequency={220 * (i + 1)}:duration={seconds}"]
            args += ["-c:a", "aac"]
        args += ["-c:v", "mpeg4", "-shortest", "file:" + str(path)]
        subprocess.run(args, check=True, stdin=subprocess.DEVNULL, capture_output=True)
        made.append(path)
    return made


def decoded_duration(
    path: str | os.PathLike[str], *, ffmpeg: str | os.PathLike[str] | None = None
) -> float | None:
    """Decode all of ``path`` and return its duration in seconds, or ``None`` if ffmpeg
    cannot decode it: a check that an output is complete and playable."""
    exe = find_ffmpeg(ffmpeg)
    proc = subprocess.run(
        [exe, "-hide_banner", "-nostdin", "-i", "file:" + str(path), "-f", "null", "-"],
        capture_output=True,
        text=True,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    if proc.returncode != 0:
        return None
    last = None
    for part in proc.stderr.replace("\r", "\n").split():
        if part.startswith("time="):
            last = part[5:]
    if last is None or last.count(":") != 2:
        return None
    hours, minutes, seconds = last.split(":")
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)
