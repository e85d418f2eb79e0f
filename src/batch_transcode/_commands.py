"""The one ffmpeg command builder, shared by every backend.

Commands are argv lists, never shell strings. Paths are passed with ffmpeg's
``file:`` protocol prefix so that names starting with ``-`` or containing
``:`` are never read as options or protocols. Where a shell line cannot be
avoided (a Batch task command line) :func:`shell_line` quotes every word.

One run reads the input once and writes every output: ffmpeg takes any number
of outputs after one ``-i``, each with its own options before its name
(https://ffmpeg.org/ffmpeg.html#Synopsis), and decodes each input stream once
for all of them.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence

from batch_transcode._presets import DEFAULT_LOUDNESS_SAMPLE_RATE, Preset

__all__ = ["SEEK_FRACTION_WORD", "ffmpeg_argv", "loudnorm_filter", "output_args", "shell_line"]

#: Options an audio option of a preset replaces in its ``args`` (option -> words it takes).
_BITRATE_OPTIONS = ("-b:a", "-ab", "-q:a", "-aq", "-qscale:a")
_CHANNEL_OPTIONS = ("-ac",)
_RATE_OPTIONS = ("-ar",)

#: loudnorm's defaults for true peak and loudness range, stated so the command says
#: what it does (https://ffmpeg.org/ffmpeg-filters.html#loudnorm).
LOUDNORM_TRUE_PEAK = -1.5
LOUDNORM_RANGE = 11.0


#: The ``-ss`` value of an output placed at a fraction of an input's duration not known
#: when the command is built (a Batch task reads it on the node): ``{fraction:.6f}``
#: fills it in; the task script replaces the word (see ``_azure.builders``).
SEEK_FRACTION_WORD = "@bt-seek-fraction:{fraction:.6f}@"


def _file_url(path: str) -> str:
    return "file:" + path


def _without(args: Sequence[str], options: Sequence[str]) -> list[str]:
    """``args`` less each of ``options`` and the value that follows it."""
    out: list[str] = []
    skip = False
    for word in args:
        if skip:
            skip = False
        elif word in options:
            skip = True
        else:
            out.append(word)
    return out


def loudnorm_filter(target: float) -> str:
    """ffmpeg's EBU R128 loudness normalisation to ``target`` LUFS, single pass."""
    return f"loudnorm=I={target:g}:TP={LOUDNORM_TRUE_PEAK:g}:LRA={LOUDNORM_RANGE:g}"


def _seek(preset: Preset, duration: float | None) -> str | None:
    """The time an output starts at (``-ss``), if it has one."""
    if preset.seek is not None:
        return f"{preset.seek:g}"
    if preset.seek_fraction is None:
        return None
    if duration is None:
        return SEEK_FRACTION_WORD.format(fraction=preset.seek_fraction)
    return f"{preset.seek_fraction * duration:.3f}"


def output_args(preset: Preset) -> list[str]:
    """The options of one output: the preset's ``args`` with its audio options applied
    (each replaces what ``args`` says on the same point)."""
    args = list(preset.args)
    tail: list[str] = []
    if preset.bitrate is not None:
        args = _without(args, _BITRATE_OPTIONS)
        tail += ["-b:a", preset.bitrate]
    if preset.channels is not None:
        args = _without(args, _CHANNEL_OPTIONS)
        tail += ["-ac", str(preset.channels)]
    rate = preset.sample_rate
    if preset.loudness is not None:
        norm = loudnorm_filter(preset.loudness)
        if "-af" in args:  # a custom filter chain: normalise after it
            at = args.index("-af") + 1
            args[at] = f"{args[at]},{norm}"
        else:
            tail += ["-af", norm]
        if rate is None and "-ar" not in args:
            rate = DEFAULT_LOUDNESS_SAMPLE_RATE
    if rate is not None:
        args = _without(args, _RATE_OPTIONS)
        tail += ["-ar", str(rate)]
    return [*args, *tail]


def ffmpeg_argv(
    ffmpeg: str, source: str, outputs: Sequence[tuple[str, Preset]], *, duration: float | None = None
) -> list[str]:
    """The argv converting ``source`` into each ``(output, preset)`` of ``outputs`` in one run;
    ``duration`` (seconds) places outputs with a ``seek_fraction``.

    ``-nostdin`` keeps ffmpeg off the terminal, ``-y`` lets it write the
    (temporary, unique) output names, ``-loglevel error`` keeps stderr short
    and to the point for error reports.

    A video-only output that starts later (a thumbnail at 30 s) reads the same file as
    one more input, seeked there (``-ss`` before ``-i`` jumps to the nearest key frame
    instead of decoding up to the time), and takes its first video stream, if any
    (``-map N:v:0?``); other outputs with a start time seek as an output option, decoding
    up to it (https://ffmpeg.org/ffmpeg.html#Main-options, #Advanced-options).
    """
    if not outputs:
        raise ValueError("ffmpeg_argv needs at least one output")
    url = _file_url(source)
    inputs = ["-i", url]
    count = 1
    words: list[str] = []
    for output, preset in outputs:
        seek = _seek(preset, duration)
        options = output_args(preset)
        if seek is not None and preset.video_only:
            inputs += ["-ss", seek, "-i", url]
            options = ["-map", f"{count}:v:0?", *options]
            count += 1
        elif seek is not None:
            options = ["-ss", seek, *options]
        words += [*options, _file_url(output)]
    return [ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error", "-y", *inputs, *words]


def shell_line(argv: Sequence[str]) -> str:
    """A POSIX shell line running ``argv`` with every word quoted."""
    return shlex.join(argv)
