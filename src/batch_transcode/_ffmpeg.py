"""ffmpeg itself: locating the executable, naming its temporary outputs, and saying
why a run failed (one line, then the tail of its stderr), for both backends."""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

from batch_transcode._errors import FFmpegNotFoundError
from batch_transcode._presets import Preset

__all__ = ["describe_ffmpeg_failure", "find_ffmpeg", "stderr_tail", "temporary_output"]

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


def describe_ffmpeg_failure(exit_code: int | None, stderr: str, preset: Preset) -> str:
    """One line saying why, then the tail of ffmpeg's stderr."""
    low = stderr.lower()
    if preset.audio_only and (
        "does not contain any stream" in low
        or "output file does not contain any stream" in low
        or "matches no streams" in low
    ):
        why = "the input has no audio stream to convert"
    elif "invalid data found when processing input" in low or "could not find codec parameters" in low:
        why = "ffmpeg cannot read this file as media"
    elif "no such file or directory" in low:
        why = "ffmpeg could not open the input"
    elif exit_code is None:
        why = "ffmpeg did not finish in time and was stopped"
    elif exit_code < 0:
        why = f"ffmpeg was killed by signal {-exit_code}"
    else:
        why = f"ffmpeg exited with code {exit_code}"
    tail = stderr_tail(stderr)
    return f"{why}\n{tail}" if tail else why
