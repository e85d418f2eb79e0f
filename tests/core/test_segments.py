"""Splitting a video at its keyframes: the index read with PyAV against a full decode,
the segments' cover of the frames, a real seek per segment against a full decode (open
GOP in MP4, MPEG-TS and Matroska, VFR, an MPEG-TS start offset, an MP4 edit list), and
the makespan estimate."""

from __future__ import annotations

import itertools
import math
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import pytest

from batch_transcode import ConfigError
from batch_transcode._segments import (
    Segment,
    VideoIndex,
    _index_from_packets,
    _Packet,
    longest_first,
    makespan,
    plan_segments,
    read_keyframes,
)

SIZE = "160x120"
X264 = ("-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p")


def _ffmpeg(ffmpeg: str, *args: str) -> bytes:
    return subprocess.run(
        [ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error", "-y", *args],
        check=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        timeout=60,
    ).stdout


def _source(rate: str, seconds: float, *, audio: bool) -> list[str]:
    args = ["-f", "lavfi", "-i", f"testsrc=size={SIZE}:rate={rate}:duration={seconds}"]
    return [*args, "-f", "lavfi", "-i", f"sine=duration={seconds}", "-c:a", "aac"] if audio else args


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory, ffmpeg_exe: str) -> dict[str, Path]:
    """Tiny clips, each with a keyframe every 10 or 12 frames (generated in about a second)."""
    root = tmp_path_factory.mktemp("segment-clips")
    gop = ("-g", "12", "-keyint_min", "12", "-bf", "3")
    # a fixed B-frame pattern (b-adapt=0): every I-frame after the first gets 3 leading B-frames
    open_gop = (*gop, "-x264-params", "open-gop=1:b-adapt=0")
    made = {
        # closed GOPs, B-frames; 23.976 fps in 1/24000 ticks: keyframe times are not whole
        # microseconds (10 frames: 0.417083... s); 70 frames: 7 whole GOPs; audio
        "closed": ("closed.mp4", [*_source("24000/1001", 3, audio=True), *X264, "-g", "10",
                                  "-keyint_min", "10", "-bf", "3", "-frames:v", "70"]),
        # open GOPs: each I-frame after the first is followed (in decode order) by B-frames
        # presented before it; no audio
        "open": ("open.mp4", [*_source("25", 3, audio=False), *X264, *open_gop]),
        # open GOPs in MPEG-TS with audio: the container starts near 1.4 s, not 0
        "open-ts": ("open.ts", [*_source("25", 3, audio=True), *X264, *open_gop]),
        # 1.5 s at 25 fps then 1.5 s at 10 fps (another pattern: no frame repeats), no audio
        "vfr": ("vfr.mp4", [
            "-f", "lavfi", "-i",
            f"testsrc=size={SIZE}:rate=25:duration=1.5[a];testsrc2=size={SIZE}:rate=10:duration=1.5[b];"
            "[a][b]concat=n=2:v=1:a=0",
            *X264, "-g", "8", "-bf", "2", "-fps_mode", "vfr",
        ]),
    }  # fmt: skip
    paths = {}
    for name, (file, args) in made.items():
        paths[name] = root / file
        _ffmpeg(ffmpeg_exe, *args, str(paths[name]))
    # the open-GOP MP4 in Matroska (1 ms ticks; its demuxer seeks by a keyframe's pts, back
    # from the decode time of the keyframe)
    paths["open-mkv"] = root / "open.mkv"
    _ffmpeg(ffmpeg_exe, "-i", str(paths["open"]), "-c", "copy", str(paths["open-mkv"]))
    # a stream copy from mid-GOP: an MP4 edit list whose first frames (the keyframe before
    # the cut and the frames up to it) are decoded but marked discard, never shown
    paths["trimmed"] = root / "trimmed.mp4"
    _ffmpeg(ffmpeg_exe, "-ss", "0.6", "-i", str(paths["open"]), "-c", "copy", str(paths["trimmed"]))
    return paths


CLIPS = ["closed", "open", "open-ts", "open-mkv", "vfr", "trimmed"]


def _decoded(path: Path) -> list[tuple[int, bool]]:
    """(pts, key frame) of every frame of a full decode, in presentation order."""
    with av.open(str(path)) as box:
        return [(f.pts or 0, f.key_frame) for f in box.decode(video=0)]


def _checksums(ffmpeg: str, path: Path, segment: Segment | None = None) -> list[str]:
    """The MD5 of each decoded frame of the first video stream (one per source frame):
    of all of them, or of ``segment``'s, decoded as its task would."""
    before: tuple[str, ...] = ()
    after: tuple[str, ...] = ()
    if segment is not None:
        after = ("-frames:v", str(segment.frames))
        if segment.index:
            before = ("-ss", f"{segment.seek_seconds:.6f}")
            after = ("-ss", f"{segment.skip_seconds:.6f}", *after)
    out = _ffmpeg(
        ffmpeg, *before, "-i", str(path), *after, "-map", "0:V:0", "-fps_mode", "passthrough",
        "-f", "framemd5", "-",
    )  # fmt: skip
    return [line.split(",")[-1].strip() for line in out.decode().splitlines() if not line.startswith("#")]


# -- the index ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", CLIPS)
def test_index_matches_a_full_decode(clips: dict[str, Path], name: str) -> None:
    index = read_keyframes(clips[name])
    frames = _decoded(clips[name])
    assert index.problem is None
    assert index.frames == len(frames)
    assert list(index.keyframes) == [i for i, (_, key) in enumerate(frames) if key]
    assert list(index.keyframe_pts) == [pts for pts, key in frames if key]
    assert index.first_pts == frames[0][0]
    assert index.vfr is (name == "vfr")
    if name == "trimmed":  # the cut landed mid-GOP: frame 0 is no keyframe
        assert index.keyframes[0] > 0
    else:
        assert index.keyframes[0] == 0 and len(index.keyframes) >= 5


def _leading_frames(path: Path) -> int:
    """Frames that follow a keyframe (not the first) in decode order but are presented
    before it: the mark of an open GOP."""
    with av.open(str(path)) as box:
        packets = [(p.pts or 0, p.is_keyframe) for p in box.demux(video=0) if p.size]
    keys = [n for n, (_, key) in enumerate(packets) if key][1:]
    return sum(1 for k in keys for pts, _ in packets[k + 1 :] if pts < packets[k][0])


def test_the_clips_are_what_they_claim(clips: dict[str, Path]) -> None:
    assert _leading_frames(clips["open"]) == _leading_frames(clips["open-ts"]) == 6 * 3
    assert _leading_frames(clips["open-mkv"]) == 6 * 3
    assert _leading_frames(clips["closed"]) == 0 and _leading_frames(clips["vfr"]) == 0
    with av.open(str(clips["closed"])) as box:  # B-frames: decode order is not presentation order
        pts = [p.pts or 0 for p in box.demux(video=0) if p.size]
    assert pts != sorted(pts)
    with av.open(str(clips["open-ts"])) as box:
        assert len(box.streams.audio) == 1
    with av.open(str(clips["open"])) as box:
        assert not box.streams.audio


def test_rate_duration_and_start(clips: dict[str, Path]) -> None:
    closed = read_keyframes(clips["closed"])
    assert closed.time_base == Fraction(1, 24000)
    assert closed.average_rate == Fraction(24000, 1001)
    assert closed.duration == pytest.approx(70 * 1001 / 24000)
    assert closed.keyframes == (0, 10, 20, 30, 40, 50, 60)
    assert closed.start_time == 0
    ts = read_keyframes(clips["open-ts"])
    assert (ts.average_rate, ts.duration) == (Fraction(25), 3.0)
    assert 1.3 < ts.start_time < 1.5  # an MPEG-TS does not start at 0
    vfr = read_keyframes(clips["vfr"])
    assert vfr.duration == pytest.approx(3.0, abs=0.1)
    assert vfr.average_rate is not None and 10 < vfr.average_rate < 25
    assert [read_keyframes(clips[n]).seeks_by_pts for n in CLIPS] == [True, True, False, False, True, True]


def test_presentation_order_with_b_frames_and_an_open_gop() -> None:
    """Packets in decode order; the leading B-frames of the open-GOP I-frame (pts 6)
    come after it but are presented before it: frames 4 and 5."""
    decode_order = [(0, True), (3, False), (1, False), (2, False), (6, True), (4, False), (5, False),
                    (9, False), (7, False), (8, False)]  # fmt: skip
    packets = [_Packet(pts, pts - 2, key, duration=1) for pts, key in decode_order]
    index = _index_from_packets(Path("x"), packets, time_base=Fraction(1, 10), start_time=Fraction(0))
    assert (index.frames, index.keyframes, index.keyframe_pts, index.end_pts) == (10, (0, 6), (0, 6), 10)
    assert (index.duration, index.average_rate, index.vfr) == (1.0, Fraction(10), False)
    segments = plan_segments(index, 0.5)
    assert segments is not None
    assert [(s.start_frame, s.end_frame) for s in segments] == [(0, 6), (6, 10)]


@pytest.mark.parametrize(
    ("packets", "problem"),
    [
        ([_Packet(0, 0, True), _Packet(None, None, False)], "no timestamp"),
        ([_Packet(1, 0, False), _Packet(0, 1, True)], "does not start at a keyframe"),
        ([_Packet(2, 0, True), _Packet(1, 1, False), _Packet(3, 2, False)], "reference a picture before"),
        ([_Packet(0, 0, True), _Packet(1, 1, False), _Packet(1, 2, False)], "share a timestamp"),
        ([_Packet(0, 0, True, discard=True)], "no frames"),
    ],
)
def test_streams_that_cannot_be_split(packets: list[_Packet], problem: str) -> None:
    index = _index_from_packets(Path("x"), packets, time_base=Fraction(1), start_time=Fraction(0))
    assert index.problem is not None and problem in index.problem
    assert plan_segments(index, 0.1) is None


def test_a_file_without_video(tmp_path: Path, ffmpeg_exe: str) -> None:
    audio = tmp_path / "tone.m4a"
    _ffmpeg(ffmpeg_exe, "-f", "lavfi", "-i", "sine=duration=0.2", "-c:a", "aac", str(audio))
    index = read_keyframes(audio)
    assert index.problem == "it has no video stream" and plan_segments(index, 0.1) is None


def test_without_pyav(monkeypatch: pytest.MonkeyPatch, clips: dict[str, Path]) -> None:
    monkeypatch.setitem(sys.modules, "av", None)  # import av raises ImportError
    with pytest.raises(ConfigError, match=r"splitting needs PyAV: pip install 'batch-transcode\[split\]'"):
        read_keyframes(clips["open"])


def test_unreadable_file(tmp_path: Path) -> None:
    from batch_transcode import InputError

    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video" * 100)
    with pytest.raises(InputError, match="cannot read the video packets"):
        read_keyframes(junk)


# -- segments -----------------------------------------------------------------------------


def _check_cover(index: VideoIndex, segments: list[Segment]) -> None:
    """Every frame in exactly one segment; each cut at a keyframe; times add up."""
    assert [s.index for s in segments] == list(range(len(segments)))
    assert segments[0].start_frame == 0 and segments[-1].end_frame == index.frames
    assert all(a.end_frame == b.start_frame for a, b in itertools.pairwise(segments))
    assert sum(s.frames for s in segments) == index.frames
    keys = {
        k: (pts, dts)
        for k, pts, dts in zip(index.keyframes, index.keyframe_pts, index.keyframe_dts, strict=True)
    }
    assert all(s.start_frame in keys for s in segments[1:])
    first = segments[0]
    assert first.start_seconds == first.seek_seconds == first.skip_seconds == 0.0

    def microseconds(ticks: int) -> int:  # from the container's start (where -ss counts from)
        return math.floor((ticks * index.time_base - index.start_time) * 1_000_000)

    for s in segments[1:]:
        pts, dts = keys[s.start_frame]
        assert round((s.seek_seconds + s.skip_seconds) * 1_000_000) == microseconds(pts)
        if index.seeks_by_pts:  # MP4: to the keyframe itself
            assert s.skip_seconds == 0
        else:  # from its decode time (B-frames in every clip: before its pts)
            assert dts < pts and round(s.seek_seconds * 1_000_000) == microseconds(dts)
    assert sum(s.duration for s in segments) == pytest.approx(index.duration)


@pytest.mark.parametrize("name", CLIPS)
@pytest.mark.parametrize("seconds", [0.3, 0.5, 1.0])
def test_segments_cover_every_frame_once(clips: dict[str, Path], name: str, seconds: float) -> None:
    index = read_keyframes(clips[name])
    segments = plan_segments(index, seconds)
    assert segments is not None and len(segments) >= 2
    _check_cover(index, segments)
    assert all(s.duration >= seconds / 4 for s in segments)


@pytest.mark.parametrize("name", CLIPS)
def test_a_segment_decodes_to_its_frames(clips: dict[str, Path], ffmpeg_exe: str, name: str) -> None:
    """The rule, checked with ffmpeg: ``-ss seek_seconds`` before ``-i``, ``-ss
    skip_seconds`` after it and ``-frames:v frames`` decode to exactly the frames
    [start_frame, end_frame) of a full decode (same checksums, same count): the leading
    frames of an open GOP in the segment before its I-frame, none lost or doubled."""
    path = clips[name]
    index = read_keyframes(path)
    full = _checksums(ffmpeg_exe, path)
    assert len(full) == index.frames and len(set(full)) == len(full)  # every frame tells
    segments = plan_segments(index, 0.4)
    assert segments is not None and len(segments) >= 5
    for s in segments:
        assert _checksums(ffmpeg_exe, path, s) == full[s.start_frame : s.end_frame], s


def test_shorter_than_two_segments_is_not_split(clips: dict[str, Path]) -> None:
    index = read_keyframes(clips["open"])  # 3 s
    assert plan_segments(index, 2.0) is None
    assert plan_segments(index, 1.0, min_segments=4) is None
    halves = plan_segments(index, 1.5)
    assert halves is not None and [s.start_frame for s in halves] == [0, 36]  # the keyframe at 1.44 s
    assert plan_segments(index, 2.0, min_segments=1) is not None
    with pytest.raises(ConfigError, match="positive"):
        plan_segments(index, 0)


def test_one_segment_per_gop_when_seconds_is_shorter(clips: dict[str, Path]) -> None:
    index = read_keyframes(clips["closed"])  # a keyframe every 10 frames (0.417 s)
    segments = plan_segments(index, 0.25)
    assert segments is not None
    assert [s.start_frame for s in segments] == list(index.keyframes)
    assert {s.frames for s in segments} == {10}


def _one_per_second(seconds: int, keys: set[int]) -> VideoIndex:
    packets = [_Packet(t, t, t in keys, duration=1) for t in range(seconds)]
    return _index_from_packets(Path("x"), packets, time_base=Fraction(1), start_time=Fraction(0))


def test_tiny_segments_are_merged() -> None:
    # every frame a keyframe, 10 s: cuts at 4 s and 9 s would leave a 1 s tail (< 4.4 / 4)
    segments = plan_segments(_one_per_second(10, set(range(10))), 4.4)
    assert segments is not None and [(s.start_frame, s.end_frame) for s in segments] == [(0, 4), (4, 10)]
    # keyframes at 0, 5, 6, 20 of 25 s: the cut at 6 s would leave [5, 6), 1 s, so is dropped
    segments = plan_segments(_one_per_second(25, {0, 5, 6, 20}), 5)
    assert segments is not None
    assert [(s.start_frame, s.end_frame) for s in segments] == [(0, 5), (5, 20), (20, 25)]
    assert [s.duration for s in segments] == [5.0, 15.0, 5.0]
    assert [s.index for s in longest_first(segments)] == [1, 0, 2]
    # one keyframe only: nothing to cut at
    assert plan_segments(_one_per_second(25, {0}), 5) is None


def test_segment_checks_its_frame_count() -> None:
    with pytest.raises(ValueError, match="has 3"):
        Segment(
            index=0,
            start_frame=0,
            end_frame=4,
            start_seconds=0,
            seek_seconds=0,
            skip_seconds=0,
            frames=3,
            duration=1,
        )


# -- makespan ------------------------------------------------------------------------------


def test_makespan_of_one_long_file_among_short_ones() -> None:
    """One 120-minute file and 100 five-minute files on 16 slots: unsplit, the long file
    alone takes 120 minutes; split at 5 minutes, 620 minutes of work over 16 slots is
    38.75, in rounds of 5: 40, the stitch (1.2 minutes) on a slot free early."""
    minutes = {"long.mp4": 120.0, **{f"{n}.mp4": 5.0 for n in range(100)}}
    assert makespan(minutes, 16) == 120
    split = makespan(minutes, 16, 5)
    assert 620 / 16 <= split <= 42
    assert split == pytest.approx(40)
    # one slot: all the work in a row, the stitch included
    assert makespan(minutes, 1, 5) == pytest.approx(620 + 1.2)
    # nothing long enough to split: the same as unsplit
    assert makespan({"a": 5.0, "b": 9.0}, 4, 5) == makespan({"a": 5.0, "b": 9.0}, 4) == 9
    # the stitch waits for the last segment: 2 slots, a 20-minute file in 4 pieces
    assert makespan({"a": 20.0}, 2, 5, stitch_share=0.1) == pytest.approx(12)
    with pytest.raises(ConfigError):
        makespan(minutes, 0)
