"""Long videos encoded in segments (``segment_seconds=``): which inputs split, the names
of the pieces, and the encode validator. Shared by both backends.

A split input becomes, on either backend, one encode per segment (its video only, every
video rendition at once; :func:`~batch_transcode._commands.segment_argv`), one encode of
its whole audio (:func:`~batch_transcode._commands.audio_once_argv`: audio encoded per
segment would drift and click at the joins), and a stitch per rendition that joins the
segments by stream copy with the concat demuxer and muxes the audio
(:func:`~batch_transcode._commands.stitch_argv`). Segments are scheduled longest first.

A run splits only when each of its presets is a video preset (:meth:`Preset.video`)
without a frame rate change (``fps``) or extra ``args`` (those may map or filter
streams a segment cannot): every output is then a stitch. An input splits when PyAV
can index its keyframes (:func:`~batch_transcode._segments.read_keyframes`) and it
lasts at least :data:`MIN_SEGMENTS` segments; any other input is encoded whole, as
without ``segment_seconds``.

The encode validator (:func:`check_stitched`) reads the stitched output's packets with
PyAV (no decoding) and holds it to the whole encode: exactly the source's number of
video frames, a duration within one frame of the source's (one frame: the source's
mean frame duration; the duration from the first frame's start to the last's, as the
timestamps say: the last frame's own duration is the muxer's guess from packet
timing, which with B-frames and a variable frame rate differs from the source's even
in a whole encode), the audio starting within one frame of the video and lasting as
long as the audio-once encode's output within :data:`AUDIO_TOLERANCE` (the audio of the
whole encode is that same encode, muxed). An output that fails is never delivered: the
file fails with :class:`~batch_transcode.StitchCheckError` as its error.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import attrs

from batch_transcode._errors import InputError, StitchCheckError
from batch_transcode._presets import Preset
from batch_transcode._segments import Segment, VideoIndex, longest_first, plan_segments, read_keyframes

__all__ = [
    "AUDIO_TOLERANCE",
    "MIN_SEGMENTS",
    "SplitPlan",
    "StreamSpan",
    "audio_file",
    "check_stitched",
    "concat_file",
    "plan_split",
    "probe_spans",
    "segment_file",
    "split_note",
    "split_refusal",
]

log = logging.getLogger(__name__)

#: An input shorter than this many segments is encoded whole.
MIN_SEGMENTS = 2
#: How far (seconds) the stitched output's audio may last from the audio-once encode's.
AUDIO_TOLERANCE = 0.020


def split_refusal(presets: Sequence[Preset]) -> str | None:
    """Why a run with ``presets`` encodes every input whole (``None``: it may split)."""
    for preset in presets:
        if not preset.is_video:
            return f"preset {preset.name!r} is not a video preset; only runs of video presets split"
        if preset.fps is not None:
            return f"preset {preset.name!r} changes the frame rate; a split keeps every frame"
        if preset.args:
            return f"preset {preset.name!r} has extra args, which a segment's encode cannot take"
    return None


@attrs.frozen(kw_only=True)
class SplitPlan:
    """How one input is encoded in segments."""

    source: Path
    index: VideoIndex
    #: In video order.
    segments: tuple[Segment, ...]
    #: Whether the input has an audio stream (the audio-once encode runs then).
    has_audio: bool

    @property
    def frames(self) -> int:
        return self.index.frames

    @property
    def duration(self) -> float:
        return self.index.duration

    @property
    def frame_seconds(self) -> float:
        """One frame: the source's mean frame duration."""
        return self.index.duration / self.index.frames

    def schedule(self) -> list[Segment]:
        """The segments in the order to run them: longest first."""
        return longest_first(self.segments)


def _has_audio(path: Path) -> bool:
    import av

    try:
        with av.open(os.fspath(path)) as container:
            return bool(container.streams.audio)
    except av.error.FFmpegError as exc:
        raise InputError(f"cannot read the streams of {os.fspath(path)!r}: {exc}") from exc


def plan_split(source: Path, presets: Sequence[Preset], seconds: float) -> SplitPlan | None:
    """``source`` cut into segments of about ``seconds``, or ``None``: encoded whole
    (the presets do not split, the video is too short, or its keyframes cannot be read:
    logged at INFO). Raises :class:`ConfigError` when PyAV is missing."""
    refusal = split_refusal(presets)
    if refusal is not None:
        log.info("%s: not split: %s", source, refusal)
        return None
    try:
        index = read_keyframes(source)
        segments = plan_segments(index, seconds, min_segments=MIN_SEGMENTS)
        has_audio = _has_audio(source) if segments else False
    except InputError as exc:
        log.info("%s: not split: %s", source, exc)
        return None
    if segments is None:
        why = (
            index.problem
            or f"{index.duration:.1f} s is shorter than {MIN_SEGMENTS} segments of {seconds:g} s"
        )
        log.info("%s: not split: %s", source, why)
        return None
    log.info("%s: split into %d segments of about %g s", source, len(segments), seconds)
    return SplitPlan(source=source, index=index, segments=tuple(segments), has_audio=has_audio)


def split_note(plan: SplitPlan) -> str:
    """What a split file's result says of it."""
    return (
        f"encoded in {len(plan.segments)} segments cut at keyframes, stitched and checked "
        f"({plan.frames} frames, {plan.duration:.3f} s)"
    )


def segment_file(segment: int, rendition: int, preset: Preset) -> str:
    """The file a segment's encode writes for the ``rendition``-th preset."""
    return f"segment-{segment:05d}-{rendition}.{preset.extension}"


def audio_file(rendition: int, preset: Preset) -> str:
    """The file the audio-once encode writes for the ``rendition``-th preset."""
    return f"audio-{rendition}.{preset.extension}"


def concat_file(rendition: int) -> str:
    """The concat script of the ``rendition``-th preset's stitch."""
    return f"segments-{rendition}.txt"


@attrs.frozen
class StreamSpan:
    """A stream's packets with data (not marked discard): how many, the first's time, the
    span from it to the end of the last and to the start of the last (seconds)."""

    packets: int
    start: float
    duration: float
    last_start: float = 0.0


def probe_spans(path: str | os.PathLike[str]) -> dict[str, StreamSpan]:
    """The first video and first audio stream of ``path`` (keys ``"video"``, ``"audio"``),
    read packet by packet with PyAV, no decoding."""
    import av

    spans: dict[str, StreamSpan] = {}
    try:
        with av.open(os.fspath(path)) as container:
            for kind in ("video", "audio"):
                streams = getattr(container.streams, kind)
                if not streams:
                    continue
                stream = streams[0]
                container.seek(0)
                times = [
                    (p.pts, p.duration or 0)
                    for p in container.demux(stream)
                    if p.size and not p.is_discard and p.pts is not None
                ]
                if times and stream.time_base is not None:
                    first = min(t for t, _ in times)
                    end = max(t + d for t, d in times)
                    last = max(t for t, _ in times)
                    tb = float(stream.time_base)
                    spans[kind] = StreamSpan(len(times), first * tb, (end - first) * tb, (last - first) * tb)
    except av.error.FFmpegError as exc:
        raise InputError(f"cannot read the packets of {os.fspath(path)!r}: {exc}") from exc
    return spans


def check_stitched(plan: SplitPlan, stitched: Path, audio_once: Path | None) -> None:
    """Hold the stitched output to the whole encode (see the module notes); raise
    :class:`StitchCheckError` naming each check it misses."""
    frame = plan.frame_seconds
    problems: list[str] = []
    try:
        spans = probe_spans(stitched)
        expected = probe_spans(audio_once).get("audio") if audio_once is not None else None
    except InputError as exc:
        raise StitchCheckError(str(plan.source), [str(exc)]) from exc
    video, audio = spans.get("video"), spans.get("audio")
    if video is None:
        problems.append("it has no video")
    else:
        if video.packets != plan.frames:
            problems.append(f"{video.packets} video frames, the source has {plan.frames}")
        if abs(video.last_start - plan.index.span) > frame + 1e-6:
            problems.append(
                f"its last frame starts at {video.last_start:.3f} s, the source's at {plan.index.span:.3f} s"
            )
    if audio_once is not None and audio is None:
        problems.append("its audio is missing")
    if audio is not None and video is not None and abs(audio.start - video.start) > frame + 1e-6:
        problems.append(f"its audio starts {audio.start - video.start:+.3f} s from its video")
    if (
        audio is not None
        and expected is not None
        and abs(audio.duration - expected.duration) > AUDIO_TOLERANCE
    ):
        problems.append(f"its audio lasts {audio.duration:.3f} s, the whole file's {expected.duration:.3f} s")
    if problems:
        raise StitchCheckError(str(plan.source), problems)
