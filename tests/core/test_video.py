"""Video presets, renditions and the encoder check: the argv they build, and real ffmpeg
on tiny generated clips, every output probed with PyAV (codec, size, pixel format,
audio, frame count)."""

from __future__ import annotations

import logging
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
import av
import pytest

from batch_transcode import PRESETS, ConfigError, LocalConfig, Preset, TranscodeSession
from batch_transcode._azure.manifest import _preset_from_json, _preset_json
from batch_transcode._commands import ffmpeg_argv, output_args, size_note
from batch_transcode._ffmpeg import (
    _graph_filters,
    check_encoders,
    describe_ffmpeg_failure,
    parse_input,
    required_encoders,
    required_filters,
)
from batch_transcode._naming import output_suffixes
from batch_transcode._presets import resolve_presets

VIDEO = ["h264", "h264-1080p", "h264-720p", "h264-480p", "hevc", "av1", "vp9"]
RATE = 25


# -- clips ------------------------------------------------------------------------------


def _ffmpeg(ffmpeg: str, *args: str) -> None:
    subprocess.run(
        [ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error", "-y", *args],
        check=True,
        stdin=subprocess.DEVNULL,
        timeout=120,  # a clip takes well under a second: fail fast rather than at the test timeout
    )


def make_video(
    ffmpeg: str,
    path: Path,
    *,
    size: str = "320x240",
    seconds: float = 1.0,
    channels: int = 2,
    video: Sequence[str] = ("-c:v", "libx264", "-preset", "veryfast", "-bf", "3", "-pix_fmt", "yuv420p"),
    audio: Sequence[str] = ("-c:a", "aac"),
) -> Path:
    """A ``seconds`` long constant-frame-rate clip (``RATE`` fps) of ``size``, encoded
    with ``video`` (H.264 with B-frames by default), with a tone of ``channels``
    channels (0: no audio) encoded with ``audio``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    args = ["-f", "lavfi", "-i", f"testsrc=size={size}:rate={RATE}:duration={seconds}"]
    if channels:
        layout = {1: "mono", 2: "stereo", 6: "5.1"}[channels]
        args += [
            "-f",
            "lavfi",
            "-i",
            f"sine=frequency=440:duration={seconds},aformat=channel_layouts={layout}",
        ]
    args += [*video, *(audio if channels else ()), "-t", f"{seconds}", str(path)]
    _ffmpeg(ffmpeg, *args)
    return path


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory, ffmpeg_exe: str) -> dict[str, Path]:
    """Generated once for the module (each well under a second of encoding)."""
    root = tmp_path_factory.mktemp("video-clips")
    lossless = ("-c:v", "ffv1")
    made = {
        "cfr": make_video(ffmpeg_exe, root / "cfr.mp4"),
        "odd": make_video(
            ffmpeg_exe, root / "odd.mkv", size="321x241", video=(*lossless, "-pix_fmt", "yuv444p")
        ),
        "portrait": make_video(ffmpeg_exe, root / "portrait.mp4", size="288x512", seconds=0.4),
        "silent": make_video(ffmpeg_exe, root / "silent.mp4", channels=0),
        "surround": make_video(ffmpeg_exe, root / "surround.mp4", channels=6),
        "ten": make_video(
            ffmpeg_exe, root / "ten.mkv", seconds=0.4, video=(*lossless, "-pix_fmt", "yuv420p10le")
        ),
        "hd": make_video(ffmpeg_exe, root / "hd.mp4", size="1280x720", seconds=0.4),
    }
    # two audio tracks (stereo, then mono) and a text subtitle track
    srt = root / "subs.srt"
    srt.write_text("1\n00:00:00,000 --> 00:00:00,800\nhello\n", encoding="utf-8")
    tracks = root / "tracks.mkv"
    _ffmpeg(
        ffmpeg_exe,
        *("-f", "lavfi", "-i", f"testsrc=size=160x120:rate={RATE}:duration=1"),
        *("-f", "lavfi", "-i", "sine=frequency=440:duration=1,aformat=channel_layouts=stereo"),
        *("-f", "lavfi", "-i", "sine=frequency=880:duration=1,aformat=channel_layouts=mono"),
        *("-i", str(srt)),
        *("-map", "0", "-map", "1", "-map", "2", "-map", "3"),
        *("-c:v", "libx264", "-preset", "veryfast", "-c:a", "aac", "-c:s", "srt", "-t", "1", str(tracks)),
    )
    made["tracks"] = tracks
    return made


@attrs.frozen
class Probe:
    container: str
    video: list[dict[str, Any]]
    audio: list[dict[str, Any]]
    subtitles: int
    frames: int


def probe(path: Path) -> Probe:
    """What PyAV reads in ``path``: its streams, and the video packets of the first
    video stream (a constant frame rate output has one per source frame)."""
    with av.open(str(path)) as box:
        video = [
            {
                "codec": s.codec_context.codec.canonical_name,
                "size": (s.codec_context.width, s.codec_context.height),
                "pix_fmt": s.codec_context.pix_fmt,
                "tag": s.codec_tag,
            }
            for s in box.streams.video
        ]
        audio = [
            {"codec": s.codec_context.codec.canonical_name, "channels": s.codec_context.channels}
            for s in box.streams.audio
        ]
        subtitles = len(box.streams.subtitles)
        frames = sum(1 for p in box.demux(box.streams.video[0]) if p.size) if video else 0
        return Probe(box.format.name, video, audio, subtitles, frames)


def convert(sources: Sequence[Path], out: Path, preset: Any, **config: Any) -> list[Path]:
    with TranscodeSession(LocalConfig(workers=1, **config)) as s:
        report = s.convert(list(sources), output_dir=out, preset=preset)
    assert report.ok, report.summary()
    return list(report[0].outputs)


# -- presets and their argv (no ffmpeg) -------------------------------------------------


def test_named_video_presets() -> None:
    assert {n: (PRESETS[n].video_codec, PRESETS[n].extension, PRESETS[n].max_height) for n in VIDEO} == {
        "h264": ("h264", "mp4", None),
        "h264-1080p": ("h264", "mp4", 1080),
        "h264-720p": ("h264", "mp4", 720),
        "h264-480p": ("h264", "mp4", 480),
        "hevc": ("hevc", "mp4", None),
        "av1": ("av1", "mp4", None),
        "vp9": ("vp9", "webm", None),
    }
    for name in VIDEO:
        p = PRESETS[name]
        assert p.is_video and not p.audio_only and not p.video_only
        assert (p.bitrate, p.channels) == ("128k", 2)
    assert [PRESETS[n].crf for n in ("h264", "hevc", "av1", "vp9")] == [23, 28, 35, 31]
    assert [PRESETS[n].audio for n in ("h264", "hevc", "av1", "vp9")] == ["aac", "aac", "opus", "opus"]


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_survives_the_job_manifest(name: str) -> None:
    """Azure stores a run's presets as JSON (attrs.asdict, lists for tuples) and rebuilds
    them with Preset(**fields)."""
    import json

    preset = PRESETS[name]
    assert _preset_from_json(json.loads(json.dumps(_preset_json(preset)))) == preset
    assert Preset(**attrs.asdict(preset)) == preset


def test_h264_720p_argv() -> None:
    argv = ffmpeg_argv("ffmpeg", "in.mov", [("out.mp4", PRESETS["h264-720p"])])
    assert argv == [
        "ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-y", "-i", "file:in.mov",
        "-map", "0:V:0",
        "-vf", r"scale=w=iw:h=min(ih\,720):force_original_aspect_ratio=decrease:force_divisible_by=2,"
        "format=yuv420p",
        "-map", "0:a:0?",
        "-c:v", "libx264", "-preset", "medium", "-crf", "23",
        "-c:a", "aac", "-movflags", "+faststart", "-b:a", "128k", "-ac", "2",
        "file:out.mp4",
    ]  # fmt: skip


def test_three_renditions_share_one_decoding() -> None:
    presets = resolve_presets(["h264-1080p", "h264-720p", "h264-480p"])
    names = [f"a.{s}" for s in output_suffixes(presets)]
    assert names == ["a.h264-1080p.mp4", "a.h264-720p.mp4", "a.h264-480p.mp4"]
    argv = ffmpeg_argv("ffmpeg", "in.mov", list(zip(names, presets, strict=True)))
    assert argv.count("-i") == 1 and "-vf" not in argv
    graph = argv[argv.index("-filter_complex") + 1]
    chain = (
        "scale=w=iw:h=min(ih\\,{h}):force_original_aspect_ratio=decrease:force_divisible_by=2,format=yuv420p"
    )
    assert graph == "[0:V:0]split=3[v0][v1][v2];" + ";".join(
        f"[v{n}]{chain.format(h=h)}[o{n}]" for n, h in enumerate((1080, 720, 480))
    )
    start = argv.index("-filter_complex") + 2
    for n, name in enumerate(names):
        end = argv.index(f"file:{name}")
        assert argv[start:end] == [
            "-map", f"[o{n}]", "-map", "0:a:0?", "-c:v", "libx264", "-preset", "medium", "-crf", "23",
            "-c:a", "aac", "-movflags", "+faststart", "-b:a", "128k", "-ac", "2",
        ]  # fmt: skip
        start = end + 1
    assert output_suffixes(resolve_presets(["mp3", "h264", "vp9", "thumbnail"])) == (
        "mp3",
        "mp4",
        "webm",
        "jpg",
    )


def test_codec_options() -> None:
    def options(**kw: Any) -> list[str]:
        return output_args(Preset.video(**kw))

    hevc = options(codec="hevc")
    assert hevc[hevc.index("-c:v") : hevc.index("-c:a")] == [
        "-c:v", "libx265", "-preset", "medium", "-crf", "28", "-tag:v", "hvc1",
    ]  # fmt: skip
    assert "yuv420p10le|yuv420p" in hevc[hevc.index("-vf") + 1]
    assert "-tag:v" not in options(codec="hevc", container="mkv")
    av1 = options(codec="av1", speed=10, max_bitrate="4M")
    assert av1[av1.index("-c:v") : av1.index("-c:a")] == [
        "-c:v", "libsvtav1", "-preset", "10", "-crf", "35", "-maxrate", "4M", "-bufsize", "8M",
    ]  # fmt: skip
    vp9 = options(codec="vp9")
    assert vp9[vp9.index("-c:v") :] == [
        "-c:v", "libvpx-vp9", "-crf", "31", "-b:v", "0", "-row-mt", "1",
        "-deadline", "good", "-cpu-used", "2", "-c:a", "libopus", "-b:a", "128k", "-ac", "2",
    ]  # fmt: skip
    assert "-movflags" not in vp9  # WebM
    capped = options(codec="vp9", max_bitrate="1500k")
    assert capped[capped.index("-b:v") + 1] == "1500k"  # constrained quality
    x264 = options(codec="x264", max_bitrate="3000k", fps=12.5, width=640, height=360)
    assert x264[x264.index("-maxrate") : x264.index("-maxrate") + 4] == [
        "-maxrate",
        "3000k",
        "-bufsize",
        "6000k",
    ]
    assert x264[x264.index("-vf") + 1].startswith(r"fps=12.5,scale=w=min(iw\,640):h=min(ih\,360):")
    quiet = options(codec="h264", audio=None)
    assert "0:a:0?" not in quiet and "-c:a" not in quiet and "-b:a" not in quiet
    kept = options(codec="h264", audio="copy", container="mkv")
    assert kept[kept.index("-c:a") + 1] == "copy" and "-b:a" not in kept
    loud = output_args(PRESETS["h264"].with_audio(loudness=-16, bitrate="96k"))
    assert loud[loud.index("-b:a") :] == [
        "-b:a", "96k", "-ac", "2", "-af", "loudnorm=I=-16:TP=-1.5:LRA=11", "-ar", "48000",
    ]  # fmt: skip


def test_preset_video_names_and_defaults() -> None:
    assert Preset.video(codec="h264", height=720) == PRESETS["h264-720p"]
    assert Preset.video(codec="libx265").name == "hevc"
    assert Preset.video(codec="vp9", width=640).name == "vp9-640w"
    assert Preset.video(codec="av1", width=1280, height=720, container="mkv").name == "av1-1280x720"
    assert Preset.video(codec="h264", container=".MKV").extension == "mkv"
    assert Preset.video(codec="av1", container="webm").audio == "opus"


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"codec": "mpeg2"}, r"unknown video codec 'mpeg2'; use one of h264, hevc, av1, vp9"),
        ({"codec": "h264", "crf": 60}, "crf must be a whole number from 0 to 51"),
        ({"codec": "vp9", "crf": 31.5}, "crf must be a whole number"),
        ({"codec": "h264", "speed": 3}, "speed of h264 must be one of ultrafast"),
        ({"codec": "av1", "speed": "fast"}, "speed of av1 must be a whole number from 0"),
        ({"codec": "vp9", "speed": 9}, "speed of vp9 must be a whole number from 0"),
        ({"codec": "h264", "container": "webm"}, "h264 video goes in mp4, mkv, mov files here"),
        ({"codec": "vp9", "audio": "aac"}, r"\.webm files cannot hold aac audio"),
        ({"codec": "h264", "audio": "mp3"}, "audio of a video preset must be 'aac', 'opus', 'copy' or None"),
        ({"codec": "h264", "height": 8}, "max_height must be a whole number from 16"),
        ({"codec": "h264", "max_bitrate": "fast"}, "max_bitrate must be bits per second like '5M'"),
        ({"codec": "h264", "fps": 0}, "fps must be from 1 to 240"),
        ({"codec": "h264", "args": "-tune film"}, "list of ffmpeg arguments"),
    ],
)
def test_bad_video_settings_say_what_to_do(options: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        Preset.video(**options)


def test_video_settings_belong_to_video_presets() -> None:
    with pytest.raises(ConfigError, match="writes no audio"):
        Preset.video(codec="h264", audio=None).with_audio(loudness=-16)
    with pytest.raises(ConfigError, match="copies the audio as it is"):
        Preset.video(codec="h264", audio="copy").with_audio(bitrate="96k")
    with pytest.raises(ConfigError, match=r"crf, max_height apply to video presets only; .*Preset.video"):
        Preset(name="x", extension="mkv", args=[], audio_only=False, crf=20, max_height=720)
    with pytest.raises(ConfigError, match="neither audio_only nor video_only"):
        attrs.evolve(PRESETS["h264"], audio_only=True)


def test_required_encoders_and_filters() -> None:
    presets = resolve_presets(["h264-720p", "h264-480p", "av1", "mp3", "thumbnail"])
    assert required_encoders(presets) == {"libx264", "libsvtav1", "aac", "libopus", "libmp3lame"}
    assert required_filters(presets) == {"split", "scale", "format", "thumbnail"}
    assert required_filters([PRESETS["h264"]]) == {"scale", "format"}
    assert required_filters([Preset.video(codec="vp9", fps=30).with_audio(loudness=-16)]) == {
        "fps", "scale", "format", "loudnorm",
    }  # fmt: skip
    assert _graph_filters(r"[0:v]split=2[a][b];[a]scale=w=min(iw\,64):h=-2,drawtext=text='a,b;c'[x]") == {
        "split", "scale", "drawtext",
    }  # fmt: skip


def test_size_notes() -> None:
    assert size_note(PRESETS["h264-720p"], 320, 240) == (
        "h264-720p: the source is 320x240, smaller than 720 pixels high: kept at its size, not upscaled"
    )
    assert size_note(PRESETS["h264-720p"], 321, 241) == (
        "h264-720p: the source is 321x241, smaller than 720 pixels high: kept at its size "
        "(rounded down to even: 320x240), not upscaled"
    )
    assert size_note(PRESETS["h264-720p"], 1280, 720) is None  # at the cap: nothing to say
    assert size_note(PRESETS["h264-720p"], 1920, 1080) is None
    assert size_note(PRESETS["h264"], 320, 240) is None  # no cap
    assert size_note(PRESETS["mp3"], 320, 240) is None
    box = Preset.video(codec="h264", width=1280, height=720)
    assert size_note(box, 1280, 600) is None  # as wide as the box
    assert "smaller than 1280x720" in (size_note(box, 640, 360) or "")


def test_the_shown_size_of_an_input() -> None:
    header = (
        "  Duration: 00:00:01.00, start: 0.000000, bitrate: 754 kb/s\n"
        "  Stream #0:0[0x1](und): Video: mjpeg (Baseline) (jpeg / 0x6765706A), yuvj420p, 600x600, 90k tbn "
        "(attached pic)\n"
        "  Stream #0:1[0x2](und): Video: h264 (Main) (avc1 / 0x31637661), yuv420p(progressive), "
        "1920x1080 [SAR 1:1 DAR 16:9], 664 kb/s, 25 fps\n"
        "    Side data:\n"
        "      Display Matrix: rotation of -90.00 degrees\n"
        "  Stream #0:2[0x3](und): Audio: aac (LC) (mp4a / 0x6134706D), 44100 Hz, mono\n"
    )
    info = parse_input(header)
    assert (info.duration, info.video_size) == (1.0, (1080, 1920))
    assert parse_input(header.replace("-90.00", "180.00")).video_size == (1920, 1080)
    assert parse_input("  Stream #0:0: Audio: flac, 44100 Hz, stereo\n").video_size is None


def test_no_video_stream_names_the_video_preset() -> None:
    presets = resolve_presets(["mp3", "h264-720p", "h264-480p"])
    graph = (
        "[fc#0 @ 0x5] Stream specifier ':V:0' in filtergraph description [0:V:0]split=2... "
        "matches no streams."
    )
    assert describe_ffmpeg_failure(234, graph, presets).splitlines()[0] == (
        "the input has no video stream for the h264-720p preset (output h264-720p, .mp4)"
    )
    single = "Stream map '' matches no streams.\nError parsing options for output file file:o0.mp4."
    assert describe_ffmpeg_failure(234, single, [PRESETS["h264"]]).splitlines()[0] == (
        "the input has no video stream for the h264 preset"
    )


# -- real ffmpeg --------------------------------------------------------------------------


@pytest.mark.parametrize("name", VIDEO)
def test_every_named_video_preset(name: str, clips: dict[str, Path], tmp_path: Path) -> None:
    """A 320x240 CFR clip with B-frames: every frame comes out (packets out == frames in),
    8-bit stays 8-bit, nothing is upscaled, stereo audio in the preset's codec."""
    preset = PRESETS[name]
    (output,) = convert([clips["cfr"]], tmp_path / "out", name)
    assert output.name == f"cfr.{preset.extension}"
    got = probe(output)
    assert got.container == ("matroska,webm" if preset.extension == "webm" else "mov,mp4,m4a,3gp,3g2,mj2")
    (video,) = got.video
    assert (video["codec"], video["size"], video["pix_fmt"]) == (preset.video_codec, (320, 240), "yuv420p")
    assert got.frames == probe(clips["cfr"]).frames == RATE
    assert got.audio == [{"codec": {"aac": "aac", "opus": "opus"}[preset.audio or ""], "channels": 2}]
    if preset.video_codec == "hevc":
        assert video["tag"] == "hvc1"
    if preset.extension == "mp4":  # +faststart: the index before the media
        data = output.read_bytes()
        assert data.index(b"moov") < data.index(b"mdat")


def test_odd_dimensions_come_out_even(clips: dict[str, Path], tmp_path: Path) -> None:
    outputs = convert([clips["odd"]], tmp_path / "out", ["h264", "vp9"])
    for output in outputs:
        got = probe(output)
        assert got.video[0]["size"] == (320, 240)
        assert got.video[0]["pix_fmt"] == "yuv420p"  # a 4:4:4 8-bit source: the 8-bit format
        assert got.frames == RATE


def test_portrait_keeps_its_shape(
    clips: dict[str, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """288x512 fits under 720 (kept, with a note saying so); 480 caps its height, the width follows."""
    caplog.set_level(logging.INFO, logger="batch_transcode")
    tall, short = convert([clips["portrait"]], tmp_path / "out", ["h264-720p", "h264-480p"])
    assert (tall.name, short.name) == ("portrait.h264-720p.mp4", "portrait.h264-480p.mp4")
    assert probe(tall).video[0]["size"] == (288, 512)
    assert probe(short).video[0]["size"] == (270, 480)
    assert probe(tall).frames == probe(short).frames == 10
    notes = [r.getMessage() for r in caplog.records if "not upscaled" in r.getMessage()]
    assert len(notes) == 1 and "h264-720p: the source is 288x512, smaller than 720 pixels high" in notes[0]


def test_no_audio_in_the_input_is_a_video_only_output(clips: dict[str, Path], tmp_path: Path) -> None:
    for output in convert([clips["silent"]], tmp_path / "out", ["h264", "vp9"]):
        got = probe(output)
        assert got.audio == [] and len(got.video) == 1 and got.frames == RATE


def test_surround_audio_is_downmixed_to_stereo(clips: dict[str, Path], tmp_path: Path) -> None:
    assert probe(clips["surround"]).audio == [{"codec": "aac", "channels": 6}]
    for output, codec in zip(
        convert([clips["surround"]], tmp_path / "out", ["h264", "vp9"]), ["aac", "opus"], strict=True
    ):
        assert probe(output).audio == [{"codec": codec, "channels": 2}]


def test_ten_bit_stays_ten_bit_where_the_codec_allows(clips: dict[str, Path], tmp_path: Path) -> None:
    assert probe(clips["ten"]).video[0]["pix_fmt"] == "yuv420p10le"
    fast = [
        PRESETS["h264"],
        Preset.video(codec="hevc", speed="ultrafast"),
        Preset.video(codec="av1", speed=10),
        Preset.video(codec="vp9", speed=8),
    ]
    outputs = convert([clips["ten"]], tmp_path / "out", fast)
    assert [o.name for o in outputs] == ["ten.h264.mp4", "ten.hevc.mp4", "ten.av1.mp4", "ten.webm"]
    got = [probe(o) for o in outputs]
    assert [g.video[0]["pix_fmt"] for g in got] == ["yuv420p", "yuv420p10le", "yuv420p10le", "yuv420p10le"]
    assert [g.frames for g in got] == [10, 10, 10, 10]


def test_three_renditions_in_one_ffmpeg_run(
    clips: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """One ffmpeg process reads the 1280x720 input once and writes every output: the
    three renditions through one split, a thumbnail and an MP3 beside them."""
    import batch_transcode._local as local

    runs: list[list[str]] = []
    real = subprocess.Popen

    def recording(argv: list[str], *args: Any, **kwargs: Any) -> subprocess.Popen[bytes]:
        if "-y" in argv:  # a conversion (not a header probe or a build listing)
            runs.append(list(argv))
        return real(argv, *args, **kwargs)

    monkeypatch.setattr(local.subprocess, "Popen", recording)
    caplog.set_level(logging.INFO, logger="batch_transcode")
    presets = ["h264-1080p", "h264-720p", "h264-480p", "thumbnail", "mp3"]
    outputs = convert([clips["hd"]], tmp_path / "out", presets)
    (argv,) = runs
    assert argv.count("-i") == 1
    assert argv[argv.index("-filter_complex") + 1].startswith("[0:V:0]split=3[v0][v1][v2];")
    assert [o.name for o in outputs] == [
        "hd.h264-1080p.mp4",
        "hd.h264-720p.mp4",
        "hd.h264-480p.mp4",
        "hd.jpg",
        "hd.mp3",
    ]
    sizes = [probe(o).video[0]["size"] for o in outputs[:4]]
    assert sizes == [(1280, 720), (1280, 720), (854, 480), (1280, 720)]
    assert [probe(o).frames for o in outputs[:3]] == [10, 10, 10]
    assert probe(outputs[4]).audio == [{"codec": "mp3", "channels": 2}]
    notes = [r.getMessage() for r in caplog.records if "not upscaled" in r.getMessage()]
    assert len(notes) == 1 and "h264-1080p: the source is 1280x720, smaller than 1080 pixels high" in notes[0]


def test_no_upscaling(clips: dict[str, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="batch_transcode")
    (output,) = convert([clips["cfr"]], tmp_path / "out", "h264-720p")
    assert probe(output).video[0]["size"] == (320, 240)
    assert any("kept at its size, not upscaled" in r.getMessage() for r in caplog.records)


def test_frame_rate_change(clips: dict[str, Path], tmp_path: Path) -> None:
    (output,) = convert(
        [clips["cfr"]], tmp_path / "out", Preset.video(codec="h264", fps=10, speed="ultrafast")
    )
    assert probe(output).frames == 10


def test_streams_rule(clips: dict[str, Path], tmp_path: Path) -> None:
    """First video, first audio; subtitles and further audio tracks are left out, unless
    the preset's extra args map them (an MKV takes any subtitle as it is)."""
    source = probe(clips["tracks"])
    assert (len(source.video), source.audio, source.subtitles) == (
        1, [{"codec": "aac", "channels": 2}, {"codec": "aac", "channels": 1}], 1,
    )  # fmt: skip
    keep = Preset.video(
        codec="h264", container="mkv", name="keep-subs", args=["-map", "0:s?", "-c:s", "copy"]
    )
    plain, kept = convert([clips["tracks"]], tmp_path / "out", ["h264", keep])
    got = probe(plain)
    assert (len(got.video), got.audio, got.subtitles) == (1, [{"codec": "aac", "channels": 2}], 0)
    got = probe(kept)
    assert (len(got.video), got.audio, got.subtitles) == (1, [{"codec": "aac", "channels": 2}], 1)


def test_audio_only_input_fails_the_video_preset_cleanly(tmp_path: Path, ffmpeg_exe: str) -> None:
    tone = tmp_path / "in" / "tone.m4a"
    tone.parent.mkdir()
    _ffmpeg(ffmpeg_exe, "-f", "lavfi", "-i", "sine=duration=0.5", "-c:a", "aac", str(tone))
    with TranscodeSession(LocalConfig(workers=1)) as s:
        (result,) = s.convert([tone], output_dir=tmp_path / "out", preset="h264")
    assert result.status == "failed"
    assert (result.error or "").startswith("the input has no video stream for the h264 preset")


def _ffmpeg_without(tmp_path: Path, ffmpeg_exe: str, encoder: str) -> tuple[Path, Path]:
    """A stand-in ffmpeg whose build lists no ``encoder`` (and notes each call)."""
    calls = tmp_path / "calls.txt"
    fake = tmp_path / "bin" / "ffmpeg"
    fake.parent.mkdir()
    fake.write_text(
        "#!/bin/sh\n"
        f'echo "$*" >> "{calls}"\n'
        'case " $* " in\n'
        f'  *" -encoders "*) "{ffmpeg_exe}" "$@" | grep -v " {encoder} " ;;\n'
        f'  *) exec "{ffmpeg_exe}" "$@" ;;\n'
        "esac\n"
    )
    fake.chmod(0o755)
    return fake, calls


def test_a_missing_encoder_is_refused_before_any_file_runs(
    clips: dict[str, Path], tmp_path: Path, ffmpeg_exe: str
) -> None:
    fake, calls = _ffmpeg_without(tmp_path, ffmpeg_exe, "libx265")
    with TranscodeSession(LocalConfig(ffmpeg=fake, workers=1)) as s:
        with pytest.raises(ConfigError) as info:
            s.convert([clips["cfr"]], output_dir=tmp_path / "out", preset=["h264", "hevc"])
        message = str(info.value)
        assert message.startswith(
            f"preset 'hevc' needs the libx265 encoder, which the ffmpeg on this machine ({fake})"
        )
        assert "LocalConfig(ffmpeg=imageio_ffmpeg.get_ffmpeg_exe())" in message
        listed = [line.split()[-1] for line in calls.read_text().splitlines()]
        assert listed == ["-encoders", "-filters", "-version"]
        assert not list((tmp_path / "out").iterdir())
        # what the build has still runs, and the build was asked once
        assert s.convert([clips["cfr"]], output_dir=tmp_path / "out", preset="h264-480p").ok
    assert len(calls.read_text().splitlines()) == 5  # the listings, a header probe, the conversion


def test_check_encoders_for_other_hosts(tmp_path: Path, ffmpeg_exe: str) -> None:
    fake, _ = _ffmpeg_without(tmp_path, ffmpeg_exe, "libsvtav1")
    hint = "stage a build that has it: StagedFFmpeg(binary=...)"
    with pytest.raises(
        ConfigError, match=r"preset 'av1' needs the libsvtav1 encoder, .* on the pool nodes .*StagedFFmpeg"
    ):
        check_encoders(str(fake), [PRESETS["av1"]], where="on the pool nodes", hint=hint)
    check_encoders(str(fake), [PRESETS["vp9"], PRESETS["mp3"]], where="on the pool nodes", hint=hint)


def test_an_ffmpeg_that_cannot_list_is_not_refused(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    mute = tmp_path / "mute.sh"
    mute.write_text("#!/bin/sh\nexit 1\n")
    mute.chmod(0o755)
    check_encoders(str(mute), [PRESETS["hevc"]], where="on this machine")
    assert "not checking them" in caplog.text
