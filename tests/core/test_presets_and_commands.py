from __future__ import annotations

import shlex

import pytest
from hypothesis import given
from hypothesis import strategies as st

from batch_transcode import PRESETS, ConfigError, Preset
from batch_transcode._commands import ffmpeg_argv, shell_line
from batch_transcode._presets import resolve_preset


def test_builtin_presets() -> None:
    assert set(PRESETS) == {"mp3", "aac", "opus", "flac", "wav"}
    assert resolve_preset("MP3").extension == "mp3"
    assert resolve_preset("aac").extension == "m4a"
    assert all(p.audio_only for p in PRESETS.values())


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
    argv = ffmpeg_argv("ffmpeg", "-rf.mp4", "out:put.mp3", PRESETS["mp3"])
    assert argv[argv.index("-i") + 1] == "file:-rf.mp4"
    assert argv[-1] == "file:out:put.mp3"
    assert "-nostdin" in argv


@given(st.lists(st.text(min_size=0, max_size=30).filter(lambda s: "\x00" not in s), min_size=1, max_size=6))
def test_shell_line_round_trips_any_words(words: list[str]) -> None:
    assert shlex.split(shell_line(words)) == words
