"""The one ffmpeg command builder, shared by every backend.

Commands are argv lists, never shell strings. Paths are passed with ffmpeg's
``file:`` protocol prefix so that names starting with ``-`` or containing
``:`` are never read as options or protocols. Where a shell line cannot be
avoided (a Batch task command line) :func:`shell_line` quotes every word.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence

from batch_transcode._presets import Preset

__all__ = ["ffmpeg_argv", "shell_line"]


def _file_url(path: str) -> str:
    return "file:" + path


def ffmpeg_argv(ffmpeg: str, source: str, output: str, preset: Preset) -> list[str]:
    """The argv converting ``source`` to ``output`` with ``preset``.

    ``-nostdin`` keeps ffmpeg off the terminal, ``-y`` lets it write the
    (temporary, unique) output name, ``-loglevel error`` keeps stderr short
    and to the point for error reports.
    """
    return [
        ffmpeg,
        "-hide_banner",
        "-nostdin",
        "-loglevel",
        "error",
        "-y",
        "-i",
        _file_url(source),
        *preset.args,
        _file_url(output),
    ]


def shell_line(argv: Sequence[str]) -> str:
    """A POSIX shell line running ``argv`` with every word quoted."""
    return shlex.join(argv)
