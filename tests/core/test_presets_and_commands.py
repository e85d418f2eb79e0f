from __future__ import annotations

import shlex

import pytest
from hypothesis import given
from hypothesis import strategies as st

from batch_transcode import PRESETS, ConfigError, Preset
from batch_transcode._commands import ffmpeg_argv, output_args, shell_line
from batch_transcode._ffmpeg import describe_ffmpeg_failure
from batch_transcode._presets import resolve_preset, resolve_presets

VIDEO_PRESETS = {"h264", "h264-1080p", "h264-720p", "h264-480p", "hevc", "av1", "vp9"}


def test_builtin_presets() -> None:
    assert set(PRESETS) == {"mp3", "aac", "opus", "flac", "wav", "thumbnail"} | VIDEO_PRESETS
    assert resolve_preset("MP3").extension == "mp3"
    assert resolve_preset("aac").extension == "m4a"
    assert all(p.audio_only for n, p in PRESETS.items() if n != "thumbnail" and n not in VIDEO_PRESETS)
    assert not any(PRESETS[n].audio_only or PRESETS[n].video_only for n in VIDEO_PRESETS)
    thumb = PRESETS["thumbnail"]
    assert (thumb.extension, thumb.video_only, thumb.audio_only, thumb.seek) == ("jpg", True, False, None)
    assert thumb.args[thumb.args.index("-vf") + 1] == "thumbnail"


def test_unknown_preset_lists_the_choices() -> None:
    with pytest.raises(ConfigError, match=r"mp3.*Preset.custom"):
        resolve_preset("mp5")


def test_custom_preset() -> None:
    p = Preset.custom(".mkv", ["-c:v", "libx264", "-c:a", "copy"])
    assert (p.name, p.extension, p.args, p.audio_only) == (
        "mkv",
        "mkv",
        ("-c:v", "libx264", "-c:a", "copy"),
        False,
    )
    assert resolve_preset(p) is p
    with pytest.raises(ConfigError):
        Preset.custom("m p3", [])
    with pytest.raises(ConfigError, match="list"):
        Preset.custom("mp3", "-vn -c:a libmp3lame")  # type: ignore[arg-type]


def test_argv_uses_file_protocol_so_names_are_never_options() -> None:
    argv = ffmpeg_argv("ffmpeg", "-rf.mp4", [("out:put.mp3", PRESETS["mp3"])])
    assert argv[argv.index("-i") + 1] == "file:-rf.mp4"
    assert argv[-1] == "file:out:put.mp3"
    assert "-nostdin" in argv


@given(st.lists(st.text(min_size=0, max_size=30).filter(lambda s: "\x00" not in s), min_size=1, max_size=6))
def test_shell_line_round_trips_any_words(words: list[str]) -> None:
    assert shlex.split(shell_line(words)) == words


def test_one_argv_writes_every_output_with_its_own_options() -> None:
    argv = ffmpeg_argv(
        "ffmpeg",
        "in.mp4",
        [("a.mp3", PRESETS["mp3"]), ("a.opus", PRESETS["opus"]), ("a.jpg", PRESETS["thumbnail"])],
    )
    assert argv.count("-i") == 1
    first = argv.index("file:a.mp3")
    assert argv[argv.index("-i") + 2 : first] == ["-vn", "-c:a", "libmp3lame", "-q:a", "2"]
    assert argv[first + 1 : argv.index("file:a.opus")] == ["-vn", "-c:a", "libopus", "-b:a", "128k"]
    assert argv[argv.index("file:a.opus") + 1 :] == [
        "-an", "-sn", "-dn", "-vf", "thumbnail", "-frames:v", "1", "-q:v", "2", "-update", "1", "file:a.jpg",
    ]  # fmt: skip


def test_a_thumbnail_at_a_time_reads_the_input_again_seeked() -> None:
    """Input seeking jumps to a key frame near the time instead of decoding the video up
    to it; the other outputs read the first input from the start."""
    thumb = Preset.thumbnail(at=2.5, width=320)
    argv = ffmpeg_argv("ffmpeg", "in.mp4", [("a.mp3", PRESETS["mp3"]), ("a.jpg", thumb)])
    assert argv[argv.index("-i") : argv.index("-vn")] == [
        "-i",
        "file:in.mp4",
        "-ss",
        "2.5",
        "-i",
        "file:in.mp4",
    ]
    assert argv[argv.index("file:a.mp3") + 1 :] == [
        "-map", "1:v:0?", "-an", "-sn", "-dn", "-vf", "scale=320:-2", "-frames:v", "1", "-q:v", "2",
        "-update", "1", "file:a.jpg",
    ]  # fmt: skip
    half = ffmpeg_argv("ffmpeg", "in.mp4", [("a.jpg", Preset.thumbnail(fraction=0.5))], duration=61.0)
    assert half[half.index("-ss") + 1] == "30.500"
    seeked_audio = Preset(name="tail", extension="mp3", args=["-vn"], seek=10)
    argv = ffmpeg_argv("ffmpeg", "in.mp4", [("a.mp3", seeked_audio)])
    assert argv.count("-i") == 1 and argv[-4:] == ["-ss", "10", "-vn", "file:a.mp3"]


def test_audio_options_replace_what_the_args_say() -> None:
    mp3 = PRESETS["mp3"].with_audio(bitrate="96k", channels=1, sample_rate=44100)
    assert output_args(mp3) == ["-vn", "-c:a", "libmp3lame", "-b:a", "96k", "-ac", "1", "-ar", "44100"]
    aac = PRESETS["aac"].with_audio(bitrate="64k")
    assert output_args(aac) == ["-vn", "-c:a", "aac", "-b:a", "64k"]
    assert PRESETS["mp3"].with_audio() == PRESETS["mp3"]


def test_loudness_adds_loudnorm_and_a_sample_rate() -> None:
    args = output_args(PRESETS["opus"].with_audio(loudness=-16))
    assert args[args.index("-af") + 1] == "loudnorm=I=-16:TP=-1.5:LRA=11"
    assert args[args.index("-ar") + 1] == "48000"  # loudnorm alone would make 192 kHz
    args = output_args(PRESETS["mp3"].with_audio(loudness=-23, sample_rate=44100))
    assert args[args.index("-ar") + 1] == "44100" and args.count("-ar") == 1
    custom = Preset.custom("ogg", ["-c:a", "libvorbis", "-af", "highpass=f=80"]).with_audio(loudness=-16)
    args = output_args(custom)
    assert args.count("-af") == 1
    assert args[args.index("-af") + 1] == "highpass=f=80,loudnorm=I=-16:TP=-1.5:LRA=11"


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"bitrate": "fast"}, "bitrate"),
        ({"channels": 0}, "channels"),
        ({"sample_rate": 1000}, "sample_rate"),
        ({"loudness": -3}, "loudness"),
        ({"loudness": float("nan")}, "loudness"),
    ],
)
def test_bad_audio_options_are_config_errors(options: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        PRESETS["mp3"].with_audio(**options)  # type: ignore[arg-type]


def test_audio_options_need_the_audio_re_encoded() -> None:
    remux = Preset.custom("mkv", ["-c:v", "copy", "-c:a", "copy"])
    with pytest.raises(ConfigError, match="copies the audio stream"):
        remux.with_audio(loudness=-16)
    assert Preset.custom("mkv", ["-c:v", "copy", "-c:a", "aac"]).with_audio(loudness=-16).loudness == -16


def test_thumbnail_takes_no_audio_options() -> None:
    with pytest.raises(ConfigError, match="writes no audio"):
        PRESETS["thumbnail"].with_audio(loudness=-16)
    with pytest.raises(ConfigError, match="width"):
        Preset.thumbnail(width=3)


def test_resolve_presets() -> None:
    assert resolve_presets("mp3") == (PRESETS["mp3"],)
    assert resolve_presets(["mp3", "opus", "thumbnail"]) == (
        PRESETS["mp3"],
        PRESETS["opus"],
        PRESETS["thumbnail"],
    )
    # one extension, two names: renditions, named <stem>.<preset name>.<ext>
    low = Preset.custom("mp3", ["-c:a", "libmp3lame"], name="mp3-low")
    assert resolve_presets(["mp3", low]) == (PRESETS["mp3"], low)
    with pytest.raises(ConfigError, match=r"both write \.mp3 files under one name"):
        resolve_presets(["mp3", PRESETS["mp3"].with_audio(bitrate="96k")])
    with pytest.raises(ConfigError, match=r"both write \.mp4 files under one name"):
        resolve_presets(["h264-720p", Preset.video(codec="h264", height=720, crf=28)])
    with pytest.raises(ConfigError, match="cannot stand in a file name"):
        resolve_presets(["h264", Preset.video(codec="h264", name="small/one")])
    with pytest.raises(ConfigError, match="empty"):
        resolve_presets([])
    with pytest.raises(ConfigError, match="unknown preset"):
        resolve_presets(["mp3", "mp5"])


@pytest.mark.parametrize(
    ("stderr", "first_line"),
    [
        # ffmpeg 9 (imageio-ffmpeg) names the output as out#N
        (
            "[out#1/image2 @ 0x55] Output file does not contain any stream\nError opening output files",
            "the input has no video stream for the thumbnail (output thumbnail, .jpg)",
        ),
        # ffmpeg 5.1 (Debian, the apt-installed nodes) as "Output file #N"
        (
            "Output file #0 does not contain any stream",
            "the input has no audio stream to convert (output mp3, .mp3)",
        ),
        (
            "[out#1/image2 @ 0x55] Nothing was written into output file, because at least one of its "
            "streams received no packets.",
            "no video frame 50% through for the thumbnail (the input is shorter, or has no video) "
            "(output thumbnail, .jpg)",
        ),
    ],
)
def test_a_failure_names_the_output_that_failed(stderr: str, first_line: str) -> None:
    presets = [PRESETS["mp3"], Preset.thumbnail(fraction=0.5)]
    assert describe_ffmpeg_failure(234, stderr, presets).splitlines()[0] == first_line
