"""ffmpeg itself: locating the executable, naming its temporary outputs, and saying
why a run failed (one line, then the tail of its stderr), for both backends."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import uuid
from collections.abc import Sequence
from pathlib import Path

from batch_transcode._errors import FFmpegNotFoundError
from batch_transcode._presets import Preset

__all__ = [
    "DURATION_UNKNOWN_LINE",
    "EMPTY_OUTPUT_LINE",
    "describe_ffmpeg_failure",
    "find_ffmpeg",
    "parse_duration",
    "probe_duration",
    "stderr_tail",
    "temporary_output",
]

_INSTALL_HINT = (
    "install ffmpeg (e.g. 'apt-get install ffmpeg' or 'brew install ffmpeg'), "
    "or install the bundled one with: pip install 'batch-transcode[local]'"
)


def find_ffmpeg(explicit: str | os.PathLike[str] | None = None) -> str:
    """The ffmpeg to run: ``explicit``, else ``ffmpeg`` on PATH, else the bundled binary."""
    if explicit is not None:
        path = shutil.which(str(explicit))
        if path is None:
            raise FFmpegNotFoundError(
                f"ffmpeg {str(explicit)!r} was not found or is not executable; "
                f"pass LocalConfig(ffmpeg=...) a valid path, or {_INSTALL_HINT}"
            )
        return path
    on_path = shutil.which("ffmpeg")
    if on_path is not None:
        return on_path
    try:
        import imageio_ffmpeg
    except ImportError:
        pass
    else:
        try:
            bundled = str(imageio_ffmpeg.get_ffmpeg_exe())
        except RuntimeError:
            pass
        else:
            if Path(bundled).is_file():
                return bundled
    raise FFmpegNotFoundError(f"no ffmpeg found on PATH; {_INSTALL_HINT}")


STDERR_TAIL_LINES = 15
STDERR_TAIL_CHARS = 2000


def temporary_output(output: Path) -> Path:
    """A unique hidden name beside ``output`` with the same extension (ffmpeg picks the
    format from it). Outputs are renamed to their final name only once complete."""
    return output.with_name(f".bt-{uuid.uuid4().hex[:12]}.part{output.suffix}")


def stderr_tail(stderr: str) -> str:
    lines = [ln for ln in stderr.strip().splitlines() if ln.strip()]
    return "\n".join(lines[-STDERR_TAIL_LINES:])[-STDERR_TAIL_CHARS:]


#: What a run says when it cannot read its input's duration for a ``seek_fraction``.
DURATION_UNKNOWN_LINE = (
    "batch-transcode: the input's duration is unknown, so an output at a fraction of it "
    "cannot be placed; give the thumbnail a time instead: Preset.thumbnail(at=seconds)"
)
_DURATION = re.compile(r"^\s*Duration: (\d+):(\d\d):(\d\d(?:\.\d+)?),", re.M)


def parse_duration(stderr: str) -> float | None:
    """The container duration ffmpeg prints for an input (``Duration: 00:01:02.50,``), in
    seconds; ``None`` when it prints none or ``N/A``."""
    found = _DURATION.search(stderr)
    if found is None:
        return None
    hours, minutes, seconds = found.groups()
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def probe_duration(ffmpeg: str, source: str, timeout: float = 60.0) -> float | None:
    """``source``'s duration from its header (ffmpeg with no output reads the header,
    prints the input's description and stops; nothing is decoded)."""
    try:
        proc = subprocess.run(
            [ffmpeg, "-hide_banner", "-nostdin", "-i", "file:" + source],
            capture_output=True,
            text=True,
            errors="replace",
            timeout=timeout,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return parse_duration(proc.stderr)


#: A line the backends add to ffmpeg's stderr when it exits 0 without writing an output.
EMPTY_OUTPUT_LINE = "batch-transcode: ffmpeg wrote nothing to output #{index} ({extension})"

_OUTPUT_INDEX = re.compile(r"(?:out#|output file #|output #)(\d+)")
_NO_STREAM = ("does not contain any stream", "matches no streams")
_NOTHING_WRITTEN = ("nothing was written into output file", "output file is empty", "ffmpeg wrote nothing to")


def _failed_output(low: str, presets: Sequence[Preset]) -> tuple[int, Preset, bool] | None:
    """The output ffmpeg names in a "no stream" or "nothing written" line: its index,
    preset, and whether it had no stream at all (else: nothing was written)."""
    for line in low.splitlines():
        no_stream = any(m in line for m in _NO_STREAM)
        if not no_stream and not any(m in line for m in _NOTHING_WRITTEN):
            continue
        found = _OUTPUT_INDEX.search(line)
        index = int(found.group(1)) if found else 0
        if 0 <= index < len(presets):
            return index, presets[index], no_stream
    return None


def _output_reason(preset: Preset, no_stream: bool) -> str | None:
    if preset.audio_only and no_stream:
        return "the input has no audio stream to convert"
    if preset.video_only and no_stream:
        return f"the input has no video stream for the {preset.name}"
    if preset.video_only:
        at = (
            f" at {preset.seek:g} s"
            if preset.seek is not None
            else f" {preset.seek_fraction:.0%} through"
            if preset.seek_fraction is not None
            else ""
        )
        return f"no video frame{at} for the {preset.name} (the input is shorter, or has no video)"
    return None


def describe_ffmpeg_failure(exit_code: int | None, stderr: str, presets: Sequence[Preset]) -> str:
    """One line saying why (naming the output that failed when ``presets``, the run's
    outputs in order, are several), then the tail of ffmpeg's stderr."""
    chosen = tuple(presets)
    low = stderr.lower()
    failed = _failed_output(low, chosen)
    reason = _output_reason(failed[1], failed[2]) if failed is not None else None
    if DURATION_UNKNOWN_LINE in stderr:
        why = DURATION_UNKNOWN_LINE.removeprefix("batch-transcode: ")
    elif reason is not None and failed is not None:
        why = reason if len(chosen) == 1 else f"{reason} (output {failed[1].name}, .{failed[1].extension})"
    elif "invalid data found when processing input" in low or "could not find codec parameters" in low:
        why = "ffmpeg cannot read this file as media"
    elif "no such file or directory" in low:
        why = "ffmpeg could not open the input"
    elif exit_code is None:
        why = "ffmpeg did not finish in time and was stopped"
    elif exit_code < 0:
        why = f"ffmpeg was killed by signal {-exit_code}"
    elif failed is not None:
        why = f"ffmpeg wrote nothing to output {failed[1].name} (.{failed[1].extension})"
    else:
        why = f"ffmpeg exited with code {exit_code}"
    tail = stderr_tail(stderr)
    return f"{why}\n{tail}" if tail else why
