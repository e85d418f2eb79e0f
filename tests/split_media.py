"""Clips for the split-encoding tests of both backends, and what their outputs are checked
by: video frames counted by decoding, the video's duration and the audio's start and
length read from the packets (PyAV)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import attrs
import av

from batch_transcode import Preset

SIZE = "160x120"
X264 = ("-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p")
#: An open GOP every 12 frames with 3 leading B-frames (b-adapt=0: a fixed pattern).
OPEN_GOP = ("-g", "12", "-keyint_min", "12", "-bf", "3", "-x264-params", "open-gop=1:b-adapt=0")

#: The fast presets the tests encode with: one, or two renditions.
H264 = Preset.video(codec="h264", speed="ultrafast", name="h264")
H264_SMALL = Preset.video(codec="h264", speed="ultrafast", height=96, name="h264-96p")

#: name -> (file name, ffmpeg arguments making it)
CLIPS: dict[str, tuple[str, list[str]]] = {
    # CFR H.264 with B-frames and open GOPs, 5 s at 25 fps, audio as long
    "cfr": ("cfr.mp4", [
        "-f", "lavfi", "-i", f"testsrc=size={SIZE}:rate=25:duration=5",
        "-f", "lavfi", "-i", "sine=duration=5", "-c:a", "aac", *X264, *OPEN_GOP,
    ]),
    # variable frame rate (2.5 s at 25 fps, 2.5 s at 10 fps) with audio longer than the video
    "vfr": ("vfr.mp4", [
        "-f", "lavfi", "-i",
        f"testsrc=size={SIZE}:rate=25:duration=2.5[a];testsrc2=size={SIZE}:rate=10:duration=2.5[b];"
        "[a][b]concat=n=2:v=1:a=0",
        "-f", "lavfi", "-i", "sine=duration=6.3", "-c:a", "aac", *X264, "-g", "8", "-bf", "2",
        "-fps_mode", "vfr",
    ]),
    # no audio, 29.97 fps in Matroska (1 ms ticks)
    "silent": ("silent.mkv", [
        "-f", "lavfi", "-i", f"testsrc2=size={SIZE}:rate=30000/1001:duration=4",
        *X264, "-g", "15", "-bf", "3",
    ]),
    # shorter than two segments: encoded whole
    "short": ("short.mp4", [
        "-f", "lavfi", "-i", f"testsrc=size={SIZE}:rate=25:duration=1.5",
        "-f", "lavfi", "-i", "sine=duration=1.5", "-c:a", "aac", *X264, *OPEN_GOP,
    ]),
}  # fmt: skip


def make_split_clips(ffmpeg: str, root: Path, only: tuple[str, ...] = ()) -> dict[str, Path]:
    """The clips (``only`` those named, when given) in ``root``."""
    paths = {}
    for name, (file, args) in CLIPS.items():
        if only and name not in only:
            continue
        paths[name] = root / file
        subprocess.run(
            [ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error", "-y", *args, str(paths[name])],
            check=True,
            stdin=subprocess.DEVNULL,
            timeout=120,
        )
    return paths


@attrs.frozen
class Timing:
    """A file's video frames (decoded), video duration (to the end of the last frame, and
    to its start), and audio start (from the video's start) and length, in seconds
    (``None``: no audio)."""

    frames: int
    duration: float
    last_start: float
    audio_offset: float | None
    audio_length: float | None


def _span(container: av.container.InputContainer, stream: av.stream.Stream) -> tuple[float, float, float]:
    container.seek(0)
    times = [(p.pts, p.duration or 0) for p in container.demux(stream) if p.size and not p.is_discard]
    first = min(t for t, _ in times)
    end = max(t + d for t, d in times)
    last = max(t for t, _ in times)
    base = float(stream.time_base or 0)
    return first * base, (end - first) * base, (last - first) * base


def timing(path: Path) -> Timing:
    with av.open(str(path)) as box:
        frames = sum(1 for _ in box.decode(video=0))
        start, duration, last_start = _span(box, box.streams.video[0])
        audio = box.streams.audio[0] if box.streams.audio else None
        offset = length = None
        if audio is not None:
            audio_start, length, _ = _span(box, audio)
            offset = audio_start - start
    return Timing(frames, duration, last_start, offset, length)


def assert_like_source(output: Path, source: Path, whole: Path | None = None) -> None:
    """``output`` has the source's frames, its duration within one frame (to the last
    frame's start: the last frame's own duration is the muxer's guess), its audio within
    one frame of the video and (given the whole encode ``whole``) as long as its audio
    within 20 ms."""
    got, want = timing(output), timing(source)
    frame = want.duration / want.frames
    assert got.frames == want.frames, (got, want)
    assert abs(got.last_start - want.last_start) <= frame + 1e-6, (got, want)
    assert (got.audio_offset is None) == (want.audio_offset is None), (got, want)
    if got.audio_offset is not None:
        assert abs(got.audio_offset) <= frame, got
    if whole is not None:
        unsplit = timing(whole)
        assert unsplit.frames == got.frames
        if unsplit.audio_length is not None:
            assert got.audio_length is not None
            assert abs(got.audio_length - unsplit.audio_length) <= 0.020, (got, unsplit)


def frame_dropping_ffmpeg(ffmpeg: str, folder: Path, seek: str = "1.920000") -> Path:
    """An ffmpeg that encodes one frame too few in the segment starting at ``seek``
    seconds (``-frames:v`` one less): a stitch that must fail its check."""
    wrapper = folder / "ffmpeg"
    wrapper.write_text(
        "#!/bin/sh\n"
        f'case "$*" in *"-ss {seek} -i "*) drop=1;; *) drop=0;; esac\n'
        "n=$#; prev=\n"
        "for a do\n"
        '  if [ "$drop" = 1 ] && [ "$prev" = "-frames:v" ]; then a=$((a - 1)); fi\n'
        '  set -- "$@" "$a"; prev=$a\n'
        "done\n"
        'shift "$n"\n'
        f'exec "{ffmpeg}" "$@"\n'
    )
    wrapper.chmod(0o755)
    return wrapper
