"""Several outputs per input in one ffmpeg run, audio options, loudness and thumbnails,
on the local backend with real ffmpeg and generated media."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from batch_transcode import PRESETS, ConfigError, LocalConfig, Preset, TranscodeSession
from batch_transcode._azure import builders
from batch_transcode._config import AptFFmpeg
from batch_transcode._naming import plan_work
from helpers import DurationOf, MediaFactory, integrated_loudness, make_talk, partial_files, stream_info

MP3_OPUS_THUMB = ["mp3", "opus", "thumbnail"]


def test_one_run_writes_every_output(
    tmp_path: Path, make_media: MediaFactory, duration_of: DurationOf, ffmpeg_exe: str
) -> None:
    sources = [make_media(tmp_path / "in" / "day 1" / "a.b.mp4"), make_media(tmp_path / "in" / "c.mp4")]
    out = tmp_path / "out"
    with TranscodeSession(LocalConfig(workers=2)) as s:
        report = s.convert(sources, output_dir=out, preset=MP3_OPUS_THUMB)
    assert report.ok, report.summary()
    first = report[0]
    assert first.outputs == (out / "day 1" / "a.b.mp3", out / "day 1" / "a.b.opus", out / "day 1" / "a.b.jpg")
    assert first.output == first.outputs[0]
    for result in report:
        mp3, opus, jpg = result.outputs
        for audio in (mp3, opus):
            duration = duration_of(audio)
            assert duration is not None and abs(duration - 1.0) < 0.15, (audio, duration)
        assert "Audio: mp3" in stream_info(ffmpeg_exe, mp3)
        assert "Audio: opus" in stream_info(ffmpeg_exe, opus)
        image = stream_info(ffmpeg_exe, jpg)
        assert "Video: mjpeg" in image and "64x48" in image, image
    assert sorted(p.name for p in out.rglob("*") if p.is_file()) == sorted(
        ["a.b.mp3", "a.b.opus", "a.b.jpg", "c.mp3", "c.opus", "c.jpg"]
    )


def test_an_output_that_fails_fails_the_file_with_its_reason(
    tmp_path: Path, make_media: MediaFactory, ffmpeg_exe: str
) -> None:
    good = make_media(tmp_path / "in" / "good.mp4")
    silent = make_media(tmp_path / "in" / "silent.mp4", kind="silent")
    audio_only = make_talk(ffmpeg_exe, tmp_path / "in" / "radio.m4a", seconds=2, video=False)
    out = tmp_path / "out"
    with TranscodeSession(LocalConfig(workers=2)) as s:
        report = s.convert([good, silent, audio_only], output_dir=out, preset=MP3_OPUS_THUMB)
    by_name = {r.source.name: r for r in report}
    assert by_name["good.mp4"].ok and len(by_name["good.mp4"].outputs) == 3
    no_audio = by_name["silent.mp4"]
    assert no_audio.status == "failed" and no_audio.outputs == () and no_audio.output is None
    assert no_audio.error is not None
    assert no_audio.error.splitlines()[0] == "the input has no audio stream to convert (output mp3, .mp3)"
    no_video = by_name["radio.m4a"]
    assert no_video.status == "failed" and no_video.error is not None
    assert no_video.error.splitlines()[0] == (
        "the input has no video stream for the thumbnail (output thumbnail, .jpg)"
    )
    # a failed file leaves none of its outputs behind, and no temporary file
    assert sorted(p.name for p in out.rglob("*") if p.is_file()) == ["good.jpg", "good.mp3", "good.opus"]
    assert not partial_files(out)


def test_a_thumbnail_past_the_end_fails_cleanly(tmp_path: Path, make_media: MediaFactory) -> None:
    source = make_media(tmp_path / "short.mp4")  # one second long
    with TranscodeSession(LocalConfig(workers=1)) as s:
        report = s.convert([source], output_dir=tmp_path / "out", preset=["mp3", Preset.thumbnail(at=30)])
    result = report[0]
    assert result.status == "failed" and result.error is not None
    assert result.error.splitlines()[0].startswith("no video frame at 30 s for the thumbnail")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_thumbnail_time_and_width(tmp_path: Path, ffmpeg_exe: str) -> None:
    source = make_talk(ffmpeg_exe, tmp_path / "talk.mp4", seconds=4)
    with TranscodeSession(LocalConfig(workers=1)) as s:
        report = s.convert([source], output_dir=tmp_path / "out", preset=Preset.thumbnail(at=3.2, width=32))
    assert report.ok, report.summary()
    assert report[0].output == tmp_path / "out" / "talk.jpg"
    assert "32x24" in stream_info(ffmpeg_exe, report[0].output)


def test_two_presets_with_one_extension_are_named_by_preset(
    tmp_path: Path, make_media: MediaFactory, duration_of: DurationOf
) -> None:
    """Presets sharing an extension name their outputs <stem>.<preset name>.<ext>; the
    others keep <stem>.<ext>. Two with one name and one extension are refused."""
    source = make_media(tmp_path / "a.mp4")
    low = Preset.custom("mp3", ["-vn", "-c:a", "libmp3lame", "-b:a", "64k"], name="mp3-64k", audio_only=True)
    with TranscodeSession(LocalConfig(workers=1)) as s:
        report = s.convert([source], output_dir=tmp_path / "out", preset=["mp3", low, "opus"])
        assert report.ok, report.summary()
        assert [o.name for o in report[0].outputs] == ["a.mp3.mp3", "a.mp3-64k.mp3", "a.opus"]
        assert all(duration_of(o) for o in report[0].outputs)
        same = PRESETS["mp3"].with_audio(bitrate="64k")
        with pytest.raises(ConfigError, match=r"both write \.mp3 files under one name"):
            s.convert([source], output_dir=tmp_path / "out2", preset=["mp3", same])
    assert not (tmp_path / "out2").exists()


def test_skip_existing_needs_every_output(tmp_path: Path, make_media: MediaFactory) -> None:
    source = make_media(tmp_path / "a.mp4")
    out = tmp_path / "out"
    with TranscodeSession(LocalConfig(workers=1)) as s:
        assert s.convert([source], output_dir=out, preset=MP3_OPUS_THUMB).ok
        again = s.convert([source], output_dir=out, preset=MP3_OPUS_THUMB)
        assert again[0].status == "skipped" and len(again[0].outputs) == 3
        (out / "a.opus").unlink()
        third = s.convert([source], output_dir=out, preset=MP3_OPUS_THUMB)
    assert third[0].status == "converted"
    assert all(p.stat().st_size > 0 for p in third[0].outputs)


def test_audio_options_reach_the_outputs(tmp_path: Path, ffmpeg_exe: str) -> None:
    source = make_talk(ffmpeg_exe, tmp_path / "talk.mp4", seconds=3)
    mp3 = PRESETS["mp3"].with_audio(bitrate="64k", channels=2, sample_rate=22050)
    opus = PRESETS["opus"].with_audio(bitrate="24k", channels=1)
    with TranscodeSession(LocalConfig(workers=1)) as s:
        report = s.convert([source], output_dir=tmp_path / "out", preset=[mp3, opus])
    assert report.ok, report.summary()
    mp3_info = stream_info(ffmpeg_exe, report[0].outputs[0])
    assert "22050 Hz, stereo" in mp3_info and "64 kb/s" in mp3_info, mp3_info
    assert "mono" in stream_info(ffmpeg_exe, report[0].outputs[1])
    # 24 kbit/s for 3 s is about 9 KB plus container overhead: far below the 128k default
    assert os.path.getsize(report[0].outputs[1]) < 20_000


@pytest.mark.parametrize("target", [-16.0, -23.0])
def test_loudness_is_reached_in_one_pass(tmp_path: Path, ffmpeg_exe: str, target: float) -> None:
    """Single-pass loudnorm on a clip with a 20 dB level swing at -25 LUFS: every output
    within 1 LU of the target (measured with ffmpeg's ebur128 on the outputs)."""
    source = make_talk(ffmpeg_exe, tmp_path / "talk.mp4", seconds=12)
    assert abs(integrated_loudness(ffmpeg_exe, source) - target) > 1.5  # the input is off target
    presets = [PRESETS[n].with_audio(loudness=target) for n in ("mp3", "opus", "aac")]
    with TranscodeSession(LocalConfig(workers=1)) as s:
        report = s.convert([source], output_dir=tmp_path / "out", preset=presets)
    assert report.ok, report.summary()
    for output in report[0].outputs:
        measured = integrated_loudness(ffmpeg_exe, output)
        assert abs(measured - target) <= 1.0, (output.name, measured, target)
        assert "48000 Hz" in stream_info(ffmpeg_exe, output)


def test_plan_counts_the_extra_outputs(tmp_path: Path, make_media: MediaFactory) -> None:
    from batch_transcode._plan import ASSUMED_INPUT_KBPS, THUMBNAIL_BYTES
    from helpers import azure_config

    files = [make_media(tmp_path / f"{i}.mp4", kind="long") for i in range(4)]
    size = sum(f.stat().st_size for f in files)
    session = TranscodeSession(azure_config(dedicated_nodes=1, task_slots_per_node=1))
    one = session.plan(files, preset="mp3")
    three = session.plan(files, preset=MP3_OPUS_THUMB)
    assert (one.outputs, three.outputs) == (4, 12)
    assert three.bytes_to_stage == one.bytes_to_stage == size  # each input is staged once
    media_seconds = size * 8 / (ASSUMED_INPUT_KBPS * 1000)
    assert one.output_bytes == pytest.approx(media_seconds * 190_000 / 8, rel=0.01)
    opus = media_seconds * 128_000 / 8
    assert three.output_bytes == pytest.approx(one.output_bytes + opus + 4 * THUMBNAIL_BYTES, rel=0.01)
    assert three.estimated_seconds > one.estimated_seconds and three.node_hours > one.node_hours
    assert "outputs" in str(three) and "12 (about" in str(three)
    low = session.plan(files, preset=PRESETS["mp3"].with_audio(bitrate="64k"))
    assert low.output_bytes == pytest.approx(one.output_bytes * 64 / 190, rel=0.01)


def test_cli_to_several_presets_with_loudness(
    tmp_path: Path, ffmpeg_exe: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from batch_transcode._cli import main

    source = make_talk(ffmpeg_exe, tmp_path / "in" / "talk.mp4", seconds=12)
    out = tmp_path / "out"
    argv = ["convert", str(source), "--to", "mp3,opus,thumbnail", "--loudness", "-16", "-o", str(out)]
    assert main([*argv, "--no-progress"]) == 0
    assert "1/1 converted" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["talk.jpg", "talk.mp3", "talk.opus"]
    for name in ("talk.mp3", "talk.opus"):
        assert abs(integrated_loudness(ffmpeg_exe, out / name) + 16) <= 1.0
    with pytest.raises(SystemExit) as info:
        main(["convert", str(source), "-o", str(out), "--to", "mp3,mp5"])
    assert info.value.code == 2
    assert "unknown preset mp5" in capsys.readouterr().err
    assert main(["convert", str(source), "-o", str(out), "--to", "mp3,mp3", "--no-progress"]) == 2
    assert "both write .mp3" in capsys.readouterr().err


@pytest.mark.parametrize(("fraction", "colour"), [(0.25, "red"), (0.75, "blue")])
def test_thumbnail_at_a_fraction_of_the_duration(
    tmp_path: Path, ffmpeg_exe: str, fraction: float, colour: str
) -> None:
    from helpers import make_red_then_blue, mean_colour

    source = make_red_then_blue(ffmpeg_exe, tmp_path / "in" / "clip.mp4", seconds=4)
    with TranscodeSession(LocalConfig(workers=1)) as s:
        report = s.convert(
            [source], output_dir=tmp_path / "out", preset=["mp3", Preset.thumbnail(fraction=fraction)]
        )
    assert report.ok, report.summary()
    r, _, b = mean_colour(ffmpeg_exe, report[0].outputs[1])
    assert (r > 200 and b < 50) if colour == "red" else (b > 200 and r < 50), (r, b)


def test_thumbnail_at_a_fraction_needs_a_known_duration(tmp_path: Path, ffmpeg_exe: str) -> None:
    from helpers import make_red_then_blue

    raw = make_red_then_blue(ffmpeg_exe, tmp_path / "in" / "clip.m4v", raw=True)
    with TranscodeSession(LocalConfig(workers=1)) as s:
        report = s.convert([raw], output_dir=tmp_path / "out", preset=Preset.thumbnail(fraction=0.5))
        placed = s.convert([raw], output_dir=tmp_path / "out2", preset=Preset.thumbnail(at=1))
    assert report[0].status == "failed"
    assert (report[0].error or "").startswith("the input's duration is unknown")
    assert placed.ok, placed.summary()  # a time in seconds needs no duration


def test_seek_and_seek_fraction_are_exclusive() -> None:
    with pytest.raises(ConfigError, match="not both"):
        Preset.thumbnail(at=1, fraction=0.5)
    with pytest.raises(ConfigError, match="seek_fraction"):
        Preset.thumbnail(fraction=1.0)


_name_chars = st.characters(blacklist_categories=("Cs",), blacklist_characters="/\x00")
_names = st.text(_name_chars, min_size=1, max_size=20).filter(lambda s: s not in {".", ".."})
_extensions = st.lists(st.from_regex(r"[a-z0-9]{1,5}", fullmatch=True), min_size=1, max_size=4, unique=True)


@given(st.lists(st.tuples(_names, _names), min_size=1, max_size=6, unique=True), _extensions)
def test_every_output_of_every_source_is_distinct(
    pairs: list[tuple[str, str]], extensions: list[str]
) -> None:
    sources = [Path("/data/in") / d / f"{n}.mp4" for d, n in pairs]
    items = plan_work(sources, "/data/out", extensions)
    outputs = [o for i in items for o in i.outputs]
    assert len(set(outputs)) == len(sources) * len(extensions)
    for item, (_, n) in zip(items, pairs, strict=True):
        assert [o.name for o in item.outputs] == [f"{n}.{e}" for e in extensions]
        assert {o.parent for o in item.outputs} == {item.outputs[0].parent}
        assert item.relative_outputs[0] == item.relative_outputs[0] and item.outputs[0] == item.outputs[0]


@given(st.floats(min_value=0, max_value=0.99))
def test_a_fraction_reaches_the_task_script_as_digits_only(fraction: float) -> None:
    setup = builders.ffmpeg_setup(AptFFmpeg(), None)
    script = builders.task_script(setup, "input/source.mp4", [Preset.thumbnail(fraction=fraction)])
    assert f"d * {fraction:.6f} }}" in script
    assert "@bt-seek" not in script
