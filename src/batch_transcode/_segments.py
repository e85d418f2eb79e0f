"""Splitting a long video at its keyframes into segments, to encode them in parallel.

A long input can be encoded as several tasks: one per segment of about ``S`` seconds
(video only, each from a seek, with the settings of the whole encode), the audio once,
and a stitch that concatenates the segments by stream copy and muxes the audio. This
module is the planning base of that and runs nothing: :func:`read_keyframes` reads where
a video's keyframes are, :func:`plan_segments` cuts its frames into segments there,
:func:`longest_first` orders them for scheduling, and :func:`makespan` estimates what
splitting gains on a folder.

Why PyAV: the machine that plans may have no ``ffprobe`` (the bundled static ffmpeg of
``imageio-ffmpeg`` ships none), and parsing ``ffmpeg -i`` or a decode is no index.
PyAV is FFmpeg's own libraries (libavformat: the very demuxers ffmpeg seeks with), with
wheels for Linux, macOS and Windows; it reads every packet's key flag and timestamps
without decoding, one read of the file. It is the optional extra ``split``, imported only
when a video is read.

Frame accounting, the rule:

* Frames are counted in presentation order: frame ``i`` is the ``i``-th frame of the
  first video stream by presentation time (pts), counting packets that carry data and
  are not marked discard (an MP4 edit list that starts mid-GOP marks the frames before
  its start so; they are decoded, never shown). Packets come in decode order: their pts
  are sorted to get each frame's index, and a keyframe's index is its place in that order.
* A segment is the half-open range ``[start_frame, end_frame)`` of those indices; the
  segments tile ``[0, frames)``. The first starts at frame 0 and does not seek; every
  other starts at a keyframe's index ``k``. Its task runs::

      ffmpeg -ss {seek_seconds:.6f} -i INPUT -ss {skip_seconds:.6f} -frames:v {frames} ...

  ``seek_seconds + skip_seconds`` is the keyframe's presentation time (pts) and
  ``seek_seconds`` (before ``-i``) a target from which the demuxer's seek lands at or
  before the keyframe in decode order; both count from the container's start (as ffmpeg's
  ``-ss`` does: an MPEG-TS starts near 1.4 s), rounded down to the microsecond, ffmpeg's
  unit. Demuxers seek to a timestamp at or before the target. MP4 (a ``seek_to_pts``
  format) seeks to the last keyframe presented at or before it: there the seek is the
  keyframe's pts and ``skip_seconds`` is 0. The others seek by decode time, MPEG-TS to
  *any* packet by its dts, so that seeking a TS to the keyframe's pts lands on the
  packets after the keyframe and the decoder waits for the next one: a GOP lost (the
  test of this rule caught it). For those the seek is the keyframe's dts (which ffmpeg
  moves 3/23 s earlier still for streams with B-frames). The decoder starts cleanly at
  the keyframe; ffmpeg's accurate seek (its default: never pass ``-noaccurate_seek``)
  and the output ``-ss`` then drop every frame presented before the keyframe, whatever
  the decoder made of it, and ``-frames:v`` stops at ``end_frame``. So a segment's output
  is exactly its frames, from time 0. The price, outside MP4, is some decoding before
  the keyframe, up to a GOP (Matroska's seek lands on the keyframe before).
* Open GOPs: a keyframe is any packet flagged key, IDR or not. An open-GOP I-frame is
  followed in decode order by *leading* frames, presented before it (smaller pts), that
  reference the previous GOP; cutting there by stream copy would not be clean, but the
  segments are re-encoded from a seek, so it is only a matter of counting. The leading
  frames have indices below the keyframe's, so they belong to the previous segment, whose
  encoder decodes them (ffmpeg reads on past the keyframe they reference); the segment
  starting at the keyframe drops them (presented before it). ``tests/core/test_segments.py``
  checks this on open-GOP clips (MP4, MPEG-TS, Matroska; 3 leading B-frames per I-frame):
  each segment's command decodes to the checksums of the same frames of a full decode.

Variable frame rate: the cuts are by presentation time and the counts by frame, so a VFR
input needs nothing else here (:attr:`VideoIndex.vfr` says which it is, from the pts
deltas). The tasks, though, must keep one output frame per input frame,
``-fps_mode passthrough``: with the default (``cfr`` for MP4) ffmpeg duplicates and drops
frames to a constant rate, and ``-frames:v`` would count those.

Limits: one packet is one frame (true of progressive H.264, HEVC, AV1 and VP9 in MP4,
MKV, WebM and MPEG-TS; not necessarily of field-coded interlaced video, which the frame
count check of the stitched output would catch). A
stream with a packet that has no timestamp, frames that share one, a first packet that
is no keyframe (a capture started mid-GOP) or leading frames before its first keyframe (a
cut by stream copy) gets an index with :attr:`VideoIndex.problem` set: decoders drop or
garble such frames, so the count of its frames is not known from the packets, and
:func:`plan_segments` does not split it.
"""

from __future__ import annotations

import bisect
import heapq
import itertools
import math
import os
import statistics
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any, NamedTuple

import attrs

from batch_transcode._errors import ConfigError, InputError

__all__ = [
    "STITCH_SHARE",
    "TINY_SEGMENT_SHARE",
    "Segment",
    "VideoIndex",
    "even_pieces",
    "longest_first",
    "makespan",
    "plan_segments",
    "read_keyframes",
]

#: ffmpeg's unit for ``-ss`` (``AV_TIME_BASE``) and for a container's start time.
_MICROSECONDS = 1_000_000
#: libavformat's flag of a demuxer that seeks by presentation time (``AVFMT_SEEK_TO_PTS``;
#: PyAV's ``av.format.Flags.seek_to_pts``, whose stubs do not combine with the ``int``).
_AVFMT_SEEK_TO_PTS = 0x4000000
#: A segment shorter than this share of the segment length is merged into a neighbour.
TINY_SEGMENT_SHARE = Fraction(1, 4)
#: The cost of a split file's stitch (concatenation by stream copy, the audio mux), as a
#: share of the cost of encoding the file: a copy is some hundred times faster.
STITCH_SHARE = 0.01


class _Packet(NamedTuple):
    """What the index needs of a video packet (PyAV's, or made up in a test)."""

    pts: int | None
    dts: int | None
    key: bool
    discard: bool = False
    duration: int = 0


@attrs.frozen(kw_only=True)
class VideoIndex:
    """Where the frames and keyframes of a video's first video stream are.

    Indices are presentation-order frame numbers; ``*_pts``, ``*_dts`` are in
    ``time_base`` ticks.
    ``problem`` (``None`` when the video can be split) says why it cannot; the other
    counts are then not to be relied on.
    """

    path: Path
    #: The video stream's time base (seconds per pts tick).
    time_base: Fraction
    #: Frames shown: packets with data, not marked discard.
    frames: int
    #: Presentation indices of the keyframes, ascending.
    keyframes: tuple[int, ...]
    #: Their pts and their dts (decode times; the pts where a packet has none), in order.
    keyframe_pts: tuple[int, ...]
    keyframe_dts: tuple[int, ...]
    #: The pts of frame 0, and the end of the last frame (its pts plus its duration).
    first_pts: int
    end_pts: int
    #: The pts of the last frame (0 when the index has a problem).
    last_pts: int = 0
    #: The container's start time in seconds, where ffmpeg's ``-ss`` counts from.
    start_time: Fraction
    #: Whether the container's demuxer seeks by presentation time (its ``seek_to_pts`` flag).
    seeks_by_pts: bool
    #: Whether the frame durations vary (by more than one tick, the rounding of a time base
    #: such as MKV's milliseconds at 29.97 fps).
    vfr: bool
    problem: str | None = None

    @property
    def duration(self) -> float:
        """Seconds from frame 0 to the end of the last frame."""
        return float(self._span)

    @property
    def span(self) -> float:
        """Seconds from frame 0 to the start of the last frame (a muxer may guess the last
        frame's own duration; this is its timestamps alone)."""
        return float((self.last_pts - self.first_pts) * self.time_base)

    @property
    def average_rate(self) -> Fraction | None:
        """Frames per second on average (``None`` for an empty stream)."""
        return Fraction(self.frames) / self._span if self._span > 0 else None

    @property
    def keyframe_seconds(self) -> tuple[float, ...]:
        """The keyframes' presentation times in seconds, from frame 0."""
        return tuple(float(t) for t in self._keyframe_times)

    @property
    def _span(self) -> Fraction:
        return (self.end_pts - self.first_pts) * self.time_base

    @property
    def _keyframe_times(self) -> list[Fraction]:
        return [(pts - self.first_pts) * self.time_base for pts in self.keyframe_pts]

    def seek_and_skip(self, position: int) -> tuple[float, float]:
        """The input ``-ss`` (before ``-i``) and output ``-ss`` (after it) that start at
        the ``position``-th keyframe (see the module's rule)."""
        at = self._microseconds(self.keyframe_pts[position])
        if self.seeks_by_pts:
            return at / _MICROSECONDS, 0.0
        seek = self._microseconds(min(self.keyframe_dts[position], self.keyframe_pts[position]))
        return seek / _MICROSECONDS, (at - seek) / _MICROSECONDS

    def _microseconds(self, ticks: int) -> int:
        """``ticks`` from the container's start, in whole microseconds, rounded down."""
        return max(0, math.floor((ticks * self.time_base - self.start_time) * _MICROSECONDS))


@attrs.frozen(kw_only=True)
class Segment:
    """The frames ``[start_frame, end_frame)`` of a video, encoded by one task.

    ``start_seconds`` is where the segment starts in the video (from frame 0) and
    ``duration`` how long its frames last. Its task passes ``-ss seek_seconds`` before
    ``-i``, ``-ss skip_seconds`` after it and ``-frames:v frames`` (the first segment: 0
    and 0, no ``-ss``); both times are whole microseconds, to format with six decimals.
    """

    index: int
    start_frame: int
    end_frame: int
    start_seconds: float
    seek_seconds: float
    skip_seconds: float
    frames: int
    duration: float

    def __attrs_post_init__(self) -> None:
        if self.frames != self.end_frame - self.start_frame or self.frames <= 0:
            raise ValueError(f"a segment of frames [{self.start_frame}, {self.end_frame}) has {self.frames}")


def read_keyframes(path: str | os.PathLike[str]) -> VideoIndex:
    """Index the first video stream of ``path``: one pass over its packets, no decoding.

    Raises :class:`ConfigError` when PyAV is not installed and :class:`InputError` when
    the file cannot be demuxed; a file without video gets an index with ``problem`` set.
    """
    try:
        import av
    except ImportError as exc:
        raise ConfigError("splitting needs PyAV: pip install 'batch-transcode[split]'") from exc

    where = Path(path)
    try:
        with av.open(os.fspath(path)) as container:
            start_time = Fraction(container.start_time or 0, _MICROSECONDS)
            if not container.streams.video:
                return _unsplittable(where, "it has no video stream", start_time=start_time)
            stream = container.streams.video[0]
            if stream.time_base is None:
                return _unsplittable(where, "its video stream has no time base", start_time=start_time)
            packets = (
                _Packet(p.pts, p.dts, p.is_keyframe, p.is_discard, p.duration or 0)
                for p in container.demux(stream)
                if p.size
            )
            return _index_from_packets(
                where,
                packets,
                time_base=stream.time_base,
                start_time=start_time,
                seeks_by_pts=bool(container.format.flags & _AVFMT_SEEK_TO_PTS),
            )
    except av.error.FFmpegError as exc:
        raise InputError(f"cannot read the video packets of {os.fspath(path)!r}: {exc}") from exc


def _unsplittable(
    path: Path, problem: str, *, frames: int = 0, time_base: Fraction = Fraction(1), start_time: Fraction
) -> VideoIndex:
    return VideoIndex(
        path=path,
        time_base=time_base,
        frames=frames,
        keyframes=(),
        keyframe_pts=(),
        keyframe_dts=(),
        first_pts=0,
        end_pts=0,
        start_time=start_time,
        seeks_by_pts=False,
        vfr=False,
        problem=problem,
    )


def _index_from_packets(
    path: Path,
    packets: Iterable[_Packet],
    *,
    time_base: Fraction,
    start_time: Fraction,
    seeks_by_pts: bool = False,
) -> VideoIndex:
    """The index of a stream's packets, given in decode order (see the module's rule)."""
    shown: list[tuple[int, int, bool, int]] = []  # (pts, dts, key, duration) of each frame shown
    problem: str | None = None
    first_key_pts: int | None = None
    for number, packet in enumerate(packets):
        pts = packet.pts if packet.pts is not None else packet.dts
        if pts is None:
            problem = problem or "a video packet has no timestamp"
            pts = 0
        if number == 0 and not packet.key:
            problem = problem or "the video does not start at a keyframe"
        if first_key_pts is None and packet.key:
            first_key_pts = pts
        if packet.discard:
            continue
        if first_key_pts is not None and pts < first_key_pts:
            problem = problem or "the video starts with frames that reference a picture before it"
        shown.append((pts, packet.dts if packet.dts is not None else pts, packet.key, packet.duration))

    def unsplittable(why: str) -> VideoIndex:
        return _unsplittable(path, why, frames=len(shown), time_base=time_base, start_time=start_time)

    if problem is not None:
        return unsplittable(problem)
    if not shown:
        return unsplittable("its video stream has no frames")
    shown.sort()
    deltas = [b[0] - a[0] for a, b in itertools.pairwise(shown)]
    if deltas and min(deltas) == 0:
        return unsplittable("two video frames share a timestamp")
    last_pts, _, _, last_duration = shown[-1]
    if last_duration <= 0:
        last_duration = round(statistics.median(deltas)) if deltas else 0
    keyframes = [(i, pts, dts) for i, (pts, dts, key, _) in enumerate(shown) if key]
    return VideoIndex(
        path=path,
        time_base=time_base,
        frames=len(shown),
        keyframes=tuple(i for i, _, _ in keyframes),
        keyframe_pts=tuple(pts for _, pts, _ in keyframes),
        keyframe_dts=tuple(dts for _, _, dts in keyframes),
        first_pts=shown[0][0],
        end_pts=last_pts + last_duration,
        last_pts=last_pts,
        start_time=start_time,
        seeks_by_pts=seeks_by_pts,
        vfr=bool(deltas) and max(deltas) - min(deltas) > 1,
    )


def plan_segments(index: VideoIndex, seconds: float, *, min_segments: int = 2) -> list[Segment] | None:
    """Cut ``index``'s frames into segments of about ``seconds``, or ``None``: not split.

    Each multiple of ``seconds`` (by presentation time from frame 0) picks the keyframe
    nearest to it, and the segments run from one picked keyframe to the next, by frame
    index, so every frame is in exactly one. A cut that would leave a segment shorter than
    :data:`TINY_SEGMENT_SHARE` of ``seconds`` is dropped (a tiny tail is merged into the
    segment before it). ``None`` when the video is shorter than ``min_segments *
    seconds``, has a ``problem``, or has no keyframe to cut at.
    """
    if not seconds > 0:
        raise ConfigError(f"the segment length must be a positive number of seconds, not {seconds!r}")
    if index.problem is not None or index.frames == 0 or index.duration < min_segments * seconds:
        return None
    times = index._keyframe_times
    total = index._span
    step = Fraction(seconds)
    shortest = step * TINY_SEGMENT_SHARE
    cuts: list[int] = []  # positions in index.keyframes, ascending
    last = Fraction(0)
    target = step
    while target < total:
        pos = _nearest(times, target)
        if times[pos] - last >= shortest:
            cuts.append(pos)
            last = times[pos]
        target += step
    if cuts and total - last < shortest:
        cuts.pop()
    if not cuts:
        return None
    starts = [0, *(index.keyframes[p] for p in cuts)]
    ends = [*starts[1:], index.frames]
    start_times = [Fraction(0), *(times[p] for p in cuts)]
    end_times = [*start_times[1:], total]
    seeks = [(0.0, 0.0), *(index.seek_and_skip(p) for p in cuts)]
    return [
        Segment(
            index=n,
            start_frame=start,
            end_frame=end,
            start_seconds=float(begin),
            seek_seconds=seek,
            skip_seconds=skip,
            frames=end - start,
            duration=float(finish - begin),
        )
        for n, (start, end, begin, finish, (seek, skip)) in enumerate(
            zip(starts, ends, start_times, end_times, seeks, strict=True)
        )
    ]


def _nearest(times: Sequence[Fraction], target: Fraction) -> int:
    """The position of the time in ``times`` (ascending, not empty) nearest ``target``;
    the earlier of two as near."""
    after = bisect.bisect_left(times, target)
    if after == len(times) or (after > 0 and target - times[after - 1] <= times[after] - target):
        return after - 1
    return after


def longest_first(segments: Iterable[Segment]) -> list[Segment]:
    """``segments`` in the order to schedule them: longest first (the list-scheduling
    rule that bounds the makespan), in video order among equals."""
    return sorted(segments, key=lambda s: (-s.duration, s.index))


def makespan(
    durations_by_file: Mapping[Any, float],
    slots: int,
    seconds: float | None = None,
    *,
    min_segments: int = 2,
    stitch_share: float = STITCH_SHARE,
) -> float:
    """Estimate the wall time of converting files of these durations on ``slots`` slots.

    The cost of a task is its duration (so pass durations times a cost per media second
    for a time). ``seconds=None``: one task per file. Otherwise each file at least
    ``min_segments * seconds`` long is split as :func:`plan_segments` would with a
    keyframe everywhere, and its stitch (``stitch_share`` of its cost) runs once its
    segments are done. The schedule is greedy list scheduling, longest task first (among
    equals, those of the longest file first), a ready stitch before any other task.
    """
    if slots < 1:
        raise ConfigError(f"makespan needs at least one slot, not {slots!r}")
    tasks: list[tuple[float, float, int]] = []  # (cost, file duration, file number)
    pending: dict[int, int] = {}  # split file -> segments not yet scheduled
    for number, duration in enumerate(durations_by_file.values()):
        pieces = [duration] if seconds is None else even_pieces(duration, seconds, min_segments)
        if len(pieces) > 1:
            pending[number] = len(pieces)
        tasks += [(piece, duration, number) for piece in pieces]
    queue = deque(sorted(tasks, key=lambda t: (-t[0], -t[1], t[2])))
    files = list(durations_by_file.values())
    slots_free = [0.0] * slots  # when each slot is next free (a heap)
    stitches: list[tuple[float, int]] = []  # (ready at, file number) (a heap)
    segments_end: dict[int, float] = {}
    end = 0.0
    while queue or stitches:
        now = heapq.heappop(slots_free)
        if stitches and (stitches[0][0] <= now or not queue):
            ready, number = heapq.heappop(stitches)
            finish = max(now, ready) + files[number] * stitch_share
        else:
            cost, _, number = queue.popleft()
            finish = now + cost
            if number in pending:
                segments_end[number] = max(segments_end.get(number, 0.0), finish)
                pending[number] -= 1
                if not pending[number]:
                    heapq.heappush(stitches, (segments_end[number], number))
        heapq.heappush(slots_free, finish)
        end = max(end, finish)
    return end


def even_pieces(duration: float, seconds: float, min_segments: int) -> list[float]:
    """``duration`` cut as :func:`plan_segments` cuts a video with a keyframe at every
    instant: pieces of ``seconds``, a tiny tail merged into the piece before it."""
    if duration < min_segments * seconds:
        return [duration]
    count = math.ceil(duration / seconds)
    pieces = [seconds] * (count - 1) + [duration - seconds * (count - 1)]
    if len(pieces) > 1 and pieces[-1] < seconds * float(TINY_SEGMENT_SHARE):
        pieces[-2] += pieces.pop()
    return pieces
