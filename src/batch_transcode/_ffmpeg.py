"""Locating the ffmpeg executable."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from batch_transcode._errors import FFmpegNotFoundError

__all__ = ["find_ffmpeg"]

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
