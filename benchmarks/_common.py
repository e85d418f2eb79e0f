"""What several benchmarks share: the CPU of finished child processes and a coded
test clip (run as scripts, they import this module from their own folder)."""

from __future__ import annotations

import resource
import subprocess
from pathlib import Path


def children_cpu() -> float:
    """User + system CPU seconds of this process's waited-for children so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def testsrc2_clip(ffmpeg: str, path: Path, seconds: float, width: int, height: int) -> Path:
    """``seconds`` of lavfi ``testsrc2`` at ``width`` x ``height`` and 25 fps with a 440 Hz
    tone: H.264 CRF 18 (``veryfast``, a keyframe every 2 s, yuv420p) and AAC 128k."""
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
         "-f", "lavfi", "-i", f"testsrc2=duration={seconds}:size={width}x{height}:rate=25",
         "-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:duration={seconds}",
         "-c:v", "libx264", "-preset", "veryfast", "-crf", "18", "-g", "50", "-pix_fmt", "yuv420p",
         "-c:a", "aac", "-b:a", "128k", "-shortest", str(path)],
        check=True, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    return path
