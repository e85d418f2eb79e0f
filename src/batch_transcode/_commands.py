"""The one ffmpeg command builder, shared by every backend.

Commands are argv lists, never shell strings. Paths are passed with ffmpeg's
``file:`` protocol prefix so that names starting with ``-`` or containing
``:`` are never read as options or protocols. Where a shell line cannot be
avoided (a Batch task command line) :func:`shell_line` quotes every word.

One run reads the input once and writes every output: ffmpeg takes any number
of outputs after one ``-i``, each with its own options before its name
(https://ffmpeg.org/ffmpeg.html#Synopsis), and decodes each input stream once
for all of them. Several video outputs (renditions) take the decoded video from
one ``split`` filter, each through its own scale chain.

A video preset's output (:meth:`Preset.video`):

- streams: the first video stream that is not a cover picture (``-map 0:V:0``) and
  the first audio stream if there is one (``-map 0:a:0?``); subtitles, data and
  attachments are left out;
- size: at most ``max_width`` x ``max_height``, the aspect ratio kept, never
  upscaled, both dimensions even (4:2:0 video needs them): the nearest even sizes
  that fit, so a source kept at its size loses an odd row or column;
- pixel format: the first of the codec's formats nearest the source's (a ``format``
  filter lets ffmpeg choose): a 10-bit source stays 10-bit where the codec allows it.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence

import attrs

from batch_transcode._presets import (
    DEFAULT_LOUDNESS_SAMPLE_RATE,
    VIDEO_AUDIO_ENCODERS,
    VIDEO_CODECS,
    Preset,
)
from batch_transcode._segments import Segment

__all__ = [
    "SEEK_FRACTION_WORD",
    "audio_once_argv",
    "audio_preset",
    "concat_list",
    "ffmpeg_argv",
    "loudnorm_filter",
    "output_args",
    "renditions_graph",
    "segment_argv",
    "shell_line",
    "size_note",
    "stitch_argv",
    "video_filters",
]

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


#: The words every command starts with after the executable.
_QUIET = ("-hide_banner", "-nostdin", "-loglevel", "error", "-y")


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


def _scale(preset: Preset) -> str:
    """The scale filter of a video preset: inside ``max_width`` x ``max_height`` (each
    ``min``-ed with the source's own, so nothing is upscaled), aspect ratio kept, both
    dimensions the nearest even numbers that fit (https://ffmpeg.org/ffmpeg-filters.html#scale-1)."""
    width = "iw" if preset.max_width is None else f"min(iw\\,{preset.max_width})"
    height = "ih" if preset.max_height is None else f"min(ih\\,{preset.max_height})"
    return f"scale=w={width}:h={height}:force_original_aspect_ratio=decrease:force_divisible_by=2"


def video_filters(preset: Preset) -> str:
    """The filter chain of a video preset's video: ``fps`` (when it sets one), scale, then
    a ``format`` filter listing the pixel formats its codec may write, in preference
    order; ffmpeg picks the one nearest the source's."""
    if preset.video_codec is None:
        raise ValueError(f"preset {preset.name!r} is not a video preset")
    codec = VIDEO_CODECS[preset.video_codec]
    chain = [f"fps={preset.fps:g}"] if preset.fps is not None else []
    chain += [_scale(preset), "format=" + "|".join(codec.pixel_formats)]
    return ",".join(chain)


def renditions_graph(presets: Sequence[Preset]) -> str:
    """A ``-filter_complex`` decoding the first video stream once for each of the video
    ``presets``: ``split`` into one branch each, then each branch's own chain, ending at
    the labels ``[o0]``, ``[o1]``... in the presets' order."""
    count = len(presets)
    parts = [f"[0:V:0]split={count}" + "".join(f"[v{n}]" for n in range(count))]
    parts += [f"[v{n}]{video_filters(p)}[o{n}]" for n, p in enumerate(presets)]
    return ";".join(parts)


def _doubled(bitrate: str) -> str:
    """``bitrate`` times two, in the same unit (``"5M"`` -> ``"10M"``): a VBV buffer of two
    seconds at the cap."""
    unit = bitrate[-1] if bitrate[-1] in "kKmM" else ""
    return f"{int(bitrate.removesuffix(unit)) * 2}{unit}"


def _video_args(preset: Preset, video: str | None) -> list[str]:
    """A video preset's options before its extra ``args``: streams, filters, encoder,
    audio encoder, container flags."""
    assert preset.video_codec is not None  # noqa: S101 - output_args checked it
    codec = VIDEO_CODECS[preset.video_codec]
    words = ["-map", "0:V:0", "-vf", video_filters(preset)] if video is None else ["-map", video]
    if preset.audio is not None:
        words += ["-map", "0:a:0?"]
    crf = codec.default_crf if preset.crf is None else preset.crf
    speed = codec.default_speed if preset.speed is None else preset.speed
    cap = preset.max_bitrate
    words += ["-c:v", codec.encoder]
    if codec.name == "vp9":
        # -b:v 0: constant quality; with a cap, constrained quality up to it. -row-mt 1
        # spreads one frame over the cores (https://trac.ffmpeg.org/wiki/Encode/VP9).
        words += ["-crf", str(crf), "-b:v", cap or "0", "-row-mt", "1"]
        words += ["-deadline", "good", "-cpu-used", str(speed)]
    else:
        words += ["-preset", str(speed), "-crf", str(crf)]
        if cap is not None:  # capped CRF: the cap with a two-second buffer
            words += ["-maxrate", cap, "-bufsize", _doubled(cap)]
    ext = preset.extension.lower()
    if codec.name == "hevc" and ext in ("mp4", "mov"):
        words += ["-tag:v", "hvc1"]  # Apple's players open HEVC tagged hvc1 only
    if preset.audio is not None:
        words += ["-c:a", VIDEO_AUDIO_ENCODERS[preset.audio]]
    if ext in ("mp4", "mov"):
        words += ["-movflags", "+faststart"]  # the index first: playback starts before the download ends
    return words


def output_args(preset: Preset, *, video: str | None = None) -> list[str]:
    """The options of one output: the preset's ``args`` with its audio options applied
    (each replaces what ``args`` says on the same point). A video preset's options come
    from its fields, then its ``args``; ``video`` is the filter graph output feeding it
    (renditions, see :func:`renditions_graph`), else it filters the input itself."""
    args = [*_video_args(preset, video), *preset.args] if preset.is_video else list(preset.args)
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

    Two or more video presets (renditions) share one decoding of the video through a
    ``split`` (:func:`renditions_graph`); one video preset filters its own (``-vf``).
    """
    if not outputs:
        raise ValueError("ffmpeg_argv needs at least one output")
    url = _file_url(source)
    inputs = ["-i", url]
    count = 1
    videos = [n for n, (_, p) in enumerate(outputs) if p.is_video]
    labels: dict[int, str] = {}
    words: list[str] = []
    if len(videos) > 1:
        words += ["-filter_complex", renditions_graph([outputs[n][1] for n in videos])]
        labels = {n: f"[o{k}]" for k, n in enumerate(videos)}
    for n, (output, preset) in enumerate(outputs):
        seek = _seek(preset, duration)
        options = output_args(preset, video=labels.get(n))
        if seek is not None and preset.video_only:
            inputs += ["-ss", seek, "-i", url]
            options = ["-map", f"{count}:v:0?", *options]
            count += 1
        elif seek is not None:
            options = ["-ss", seek, *options]
        words += [*options, _file_url(output)]
    return [ffmpeg, *_QUIET, *inputs, *words]


def size_note(preset: Preset, width: int, height: int) -> str | None:
    """What to tell about a video output whose source (``width`` x ``height``, as shown)
    is smaller than its preset's size cap in every capped dimension: it keeps the
    source's size (rounded down to even), it is not upscaled. ``None`` otherwise."""
    caps = [(preset.max_width, width), (preset.max_height, height)]
    capped = [(cap, have) for cap, have in caps if cap is not None]
    if not preset.is_video or not capped or any(have >= cap for cap, have in capped):
        return None
    if preset.max_width is not None and preset.max_height is not None:
        limit = f"{preset.max_width}x{preset.max_height}"
    elif preset.max_height is not None:
        limit = f"{preset.max_height} pixels high"
    else:
        limit = f"{preset.max_width} pixels wide"
    kept = f"{width - width % 2}x{height - height % 2}"
    rounded = f" (rounded down to even: {kept})" if kept != f"{width}x{height}" else ""
    return (
        f"{preset.name}: the source is {width}x{height}, smaller than {limit}: "
        f"kept at its size{rounded}, not upscaled"
    )


def shell_line(argv: Sequence[str]) -> str:
    """A POSIX shell line running ``argv`` with every word quoted."""
    return shlex.join(argv)


# -- a video split into segments (see batch_transcode._segments) ---------------------------


def _video_part(preset: Preset) -> Preset:
    """``preset`` writing its video alone (a segment's encode): no audio, no audio options."""
    return attrs.evolve(preset, audio=None, bitrate=None, channels=None, sample_rate=None, loudness=None)


def audio_preset(preset: Preset) -> Preset | None:
    """What the audio-once encode writes for a video ``preset``: its audio alone, with its
    audio encoder and options, in its container (``None``: the preset writes no audio)."""
    if preset.audio is None:
        return None
    return Preset(
        name=f"{preset.name}-audio",
        extension=preset.extension,
        args=("-map", "0:a:0", "-vn", "-sn", "-dn", "-c:a", VIDEO_AUDIO_ENCODERS[preset.audio]),
        bitrate=preset.bitrate,
        channels=preset.channels,
        sample_rate=preset.sample_rate,
        loudness=preset.loudness,
    )


def segment_argv(
    ffmpeg: str, source: str, outputs: Sequence[tuple[str, Preset]], segment: Segment
) -> list[str]:
    """The argv encoding ``segment``'s video into each ``(output, preset)`` of ``outputs``
    (every video rendition of the input, one decoding shared through a ``split``).

    The seek rule is :mod:`batch_transcode._segments`'s: ``-ss seek`` before ``-i``,
    ``-ss skip`` and ``-frames:v`` after it (the first segment: no seek). Each output
    keeps one frame per input frame (``-fps_mode passthrough``) and holds video only:
    the audio is encoded once for the whole file (:func:`audio_once_argv`)."""
    if not outputs or not all(p.is_video and p.fps is None for _, p in outputs):
        raise ValueError("a segment is encoded to video presets without a frame rate change")
    seek = ["-ss", f"{segment.seek_seconds:.6f}"] if segment.index else []
    skip = ["-ss", f"{segment.skip_seconds:.6f}"] if segment.index else []
    presets = [_video_part(p) for _, p in outputs]
    words: list[str] = []
    labels: list[str | None] = [None] * len(presets)
    if len(presets) > 1:
        words += ["-filter_complex", renditions_graph(presets)]
        labels = [f"[o{n}]" for n in range(len(presets))]
    for (output, _), preset, label in zip(outputs, presets, labels, strict=True):
        words += [*skip, "-frames:v", str(segment.frames), "-fps_mode", "passthrough"]
        words += [*output_args(preset, video=label), "-an", "-sn", "-dn", _file_url(output)]
    return [ffmpeg, *_QUIET, *seek, "-i", _file_url(source), *words]


def audio_once_argv(ffmpeg: str, source: str, outputs: Sequence[tuple[str, Preset]]) -> list[str]:
    """The argv encoding the first audio stream of ``source`` once, whole, for each
    ``(output, preset)`` (presets from :func:`audio_preset`)."""
    return ffmpeg_argv(ffmpeg, source, outputs)


def _concat_quote(path: str) -> str:
    """``path`` as one token of ffmpeg's concat script: single-quoted, a ``'`` written
    ``'\\''`` (https://ffmpeg.org/ffmpeg-formats.html#concat-1, ffmpeg-utils' quoting)."""
    return "'" + path.replace("'", "'\\''") + "'"


def concat_list(segments: Sequence[tuple[str, float]]) -> str:
    """The concat demuxer's script joining ``(path, duration)`` segments in order. Each
    file's ``duration`` (the planned one: its frames' span in the source) places the
    next one, so the joins keep the source's timestamps."""
    lines = ["ffconcat version 1.0"]
    for path, duration in segments:
        lines += [f"file {_concat_quote(path)}", f"duration {duration:.6f}"]
    return "\n".join(lines) + "\n"


def stitch_argv(ffmpeg: str, listing: str, audio: str | None, output: str, preset: Preset) -> list[str]:
    """The argv joining the segments a concat script (:func:`concat_list`) names by stream
    copy, then muxing ``audio`` (the audio-once encode's output, if any) into ``output``."""
    inputs = ["-f", "concat", "-safe", "0", "-i", _file_url(listing)]
    maps = ["-map", "0:v:0"]
    if audio is not None:
        inputs += ["-i", _file_url(audio)]
        maps += ["-map", "1:a:0"]
    words = [*maps, "-c", "copy"]
    ext = preset.extension.lower()
    if preset.video_codec == "hevc" and ext in ("mp4", "mov"):
        words += ["-tag:v", "hvc1"]
    if ext in ("mp4", "mov"):
        words += ["-movflags", "+faststart"]
    return [ffmpeg, *_QUIET, *inputs, *words, _file_url(output)]
