"""Long videos encoded in segments on the local backend: real ffmpeg on generated clips,
each output held to its source (frames decoded, duration, audio start and length) and to
the whole encode; the encode validator; a failing segment fails its file only."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from batch_transcode import (
    PRESETS,
    ConfigError,
    LocalConfig,
    Preset,
    Report,
    StitchCheckError,
    TranscodeSession,
)
from batch_transcode._commands import concat_list, segment_argv, stitch_argv
from batch_transcode._split import check_stitched, plan_split, segment_file
from helpers import wait_until
from split_media import H264, H264_SMALL, X264, assert_like_source, frame_dropping_ffmpeg


def _convert(
    ffmpeg: str, sources: list[Path], out: Path, seconds: float, presets: Sequence[Preset] = (H264,)
) -> Report:
    with TranscodeSession(LocalConfig(workers=2, ffmpeg=ffmpeg)) as s:
        return s.convert(sources, output_dir=out, preset=presets, segment_seconds=seconds)


@pytest.mark.parametrize("name", ["cfr", "vfr", "silent"])
def test_split_output_is_frame_exact(
    clips: dict[str, Path], whole: Path, ffmpeg_exe: str, tmp_path: Path, name: str
) -> None:
    source = clips[name]
    report = _convert(ffmpeg_exe, [source], tmp_path, 1.0, [H264, H264_SMALL])
    report.raise_for_failures()
    (result,) = report
    assert any("segments cut at keyframes" in note for note in result.notes), result.notes
    assert not list(tmp_path.glob(".bt-split-*"))  # the pieces are gone
    for output in result.outputs:
        assert_like_source(output, source, whole / output.name)


def test_segments_of_one_gop(clips: dict[str, Path], whole: Path, ffmpeg_exe: str, tmp_path: Path) -> None:
    plan = plan_split(clips["cfr"], [H264], 12 / 25)
    assert plan is not None
    assert [s.frames for s in plan.segments][:-1] == [12] * (len(plan.segments) - 1)
    report = _convert(ffmpeg_exe, [clips["cfr"]], tmp_path, 12 / 25)
    (result,) = report.raise_for_failures()
    assert f"encoded in {len(plan.segments)} segments" in result.notes[0]
    assert_like_source(result.outputs[0], clips["cfr"], whole / "cfr.h264.mp4")


def test_a_short_input_is_encoded_whole(clips: dict[str, Path], ffmpeg_exe: str, tmp_path: Path) -> None:
    assert plan_split(clips["short"], [H264], 1.0) is None
    (result,) = _convert(ffmpeg_exe, [clips["short"]], tmp_path, 1.0).raise_for_failures()
    assert not result.notes
    assert_like_source(result.outputs[0], clips["short"])


def test_audio_presets_never_split(clips: dict[str, Path]) -> None:
    assert plan_split(clips["cfr"], [PRESETS["mp3"]], 1.0) is None
    assert plan_split(clips["cfr"], [H264, PRESETS["thumbnail"]], 1.0) is None
    assert plan_split(clips["cfr"], [H264.with_audio(bitrate="96k")], 1.0) is not None


def test_bad_segment_seconds(clips: dict[str, Path], ffmpeg_exe: str, tmp_path: Path) -> None:
    with TranscodeSession(LocalConfig(workers=1, ffmpeg=ffmpeg_exe)) as s:
        for bad in (0, -1.0, "5"):
            with pytest.raises(ConfigError, match="segment_seconds"):
                s.submit([clips["cfr"]], output_dir=tmp_path, preset=[H264], segment_seconds=bad)  # type: ignore[arg-type]


def test_validator_catches_a_lost_segment(clips: dict[str, Path], ffmpeg_exe: str, tmp_path: Path) -> None:
    """The stitch of every segment but one fails the check: frames and duration off."""
    source = clips["cfr"]
    plan = plan_split(source, [H264], 1.0)
    assert plan is not None
    for segment in plan.segments:
        out = str(tmp_path / segment_file(segment.index, 0, H264))
        subprocess.run(segment_argv(ffmpeg_exe, str(source), [(out, H264)], segment), check=True)
    kept = plan.segments[:-1]
    (tmp_path / "list.txt").write_text(
        concat_list([(segment_file(s.index, 0, H264), s.duration) for s in kept])
    )
    stitched = tmp_path / "stitched.mp4"
    subprocess.run(stitch_argv(ffmpeg_exe, str(tmp_path / "list.txt"), None, str(stitched), H264), check=True)
    with pytest.raises(StitchCheckError, match="video frames, the source has 125") as caught:
        check_stitched(plan, stitched, None)
    assert any("last frame starts at" in p for p in caught.value.problems)
    # every segment: it passes
    (tmp_path / "list.txt").write_text(
        concat_list([(segment_file(s.index, 0, H264), s.duration) for s in plan.segments])
    )
    subprocess.run(stitch_argv(ffmpeg_exe, str(tmp_path / "list.txt"), None, str(stitched), H264), check=True)
    check_stitched(plan, stitched, None)


def _failing_ffmpeg(ffmpeg: str, folder: Path) -> Path:
    """An ffmpeg that fails the segment starting at 2 s of any input named ``bad*`` (a
    segment task failing on its own), and is the real one otherwise."""
    wrapper = folder / "ffmpeg"
    wrapper.write_text(
        "#!/bin/sh\n"
        'case "$*" in *"-ss 1.920000 -i file:"*bad*) echo "segment exploded" >&2; exit 1;; esac\n'
        f'exec {ffmpeg} "$@"\n'
    )
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    return wrapper


def test_a_failed_segment_fails_its_file_only(
    clips: dict[str, Path], ffmpeg_exe: str, tmp_path: Path
) -> None:
    (tmp_path / "in").mkdir()
    bad = shutil.copyfile(clips["cfr"], tmp_path / "in" / "bad.mp4")
    good = shutil.copyfile(clips["cfr"], tmp_path / "in" / "good.mp4")
    wrapper = _failing_ffmpeg(ffmpeg_exe, tmp_path)
    report = _convert(str(wrapper), [bad, good], tmp_path / "out", 1.0)
    failed, converted = report
    assert failed.status == "failed" and converted.ok
    assert "segment exploded" in (failed.error or "")
    assert "segment 3 of 5" in (failed.error or "")
    assert ("seg 3", "failed") in [(p.label, p.status) for p in failed.pieces]
    assert "stitch" not in [p.kind for p in failed.pieces] and len(converted.pieces) == 7
    assert not (tmp_path / "out" / "bad.h264.mp4").exists() and not (tmp_path / "out" / "bad.mp4").exists()
    assert os.listdir(tmp_path / "out") == ["good.mp4"]
    assert_like_source(converted.outputs[0], clips["cfr"])


def test_plan_shows_what_splitting_changes(clips: dict[str, Path], ffmpeg_exe: str) -> None:
    session = TranscodeSession(LocalConfig(workers=2, ffmpeg=ffmpeg_exe))
    sources = [clips["cfr"], clips["short"]]
    plan = session.plan(sources, preset=[H264], segment_seconds=1)
    assert (plan.split_files, plan.segments) == (1, 5)
    assert plan.unsplit_seconds is not None
    assert "1 of 2 files split into 5 segments of about 1 s" in str(plan)
    assert session.plan(sources, preset=[H264]).segment_seconds is None
    audio = session.plan(sources, preset="mp3", segment_seconds=1)
    assert audio.split_files == 0 and "no file split" in str(audio)


def test_cli_segment_seconds(clips: dict[str, Path], ffmpeg_exe: str, tmp_path: Path) -> None:
    from batch_transcode._cli import main

    out = tmp_path / "out"
    args = ["convert", str(clips["vfr"]), "--to", "h264", "--ffmpeg", ffmpeg_exe, "--no-progress"]
    assert main([*args, "--segment-seconds", "1", "-o", str(out)]) == 0
    assert_like_source(out / "vfr.mp4", clips["vfr"])


def test_quality_is_measured_on_the_stitched_output(
    clips: dict[str, Path], ffmpeg_exe: str, tmp_path: Path
) -> None:
    with TranscodeSession(LocalConfig(workers=2, ffmpeg=ffmpeg_exe)) as s:
        (result,) = s.convert(
            [clips["cfr"]], output_dir=tmp_path, preset=[H264], segment_seconds=1, quality="psnr"
        ).raise_for_failures()
    (scores,) = result.quality
    assert scores is not None and scores["psnr"].frames == 125 and scores["psnr"].mean > 30


def test_a_cancelled_split_leaves_no_pieces(ffmpeg_exe: str, tmp_path: Path) -> None:
    source = tmp_path / "long.mp4"
    subprocess.run(
        [ffmpeg_exe, "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i",
         "testsrc=size=320x240:rate=25:duration=30", *X264, "-g", "25", str(source)],
        check=True,
    )  # fmt: skip
    out = tmp_path / "out"
    slow = Preset.video(codec="h264", speed="veryslow", name="slow")
    with TranscodeSession(LocalConfig(workers=1, ffmpeg=ffmpeg_exe)) as s:
        job = s.submit([source], output_dir=out, preset=[slow], segment_seconds=2)
        wait_until(lambda: list(out.glob(".bt-split-*/segment-*")), timeout=60, what="a segment to start")
        job.cancel()
        (result,) = job.wait()
    assert result.status == "cancelled"
    assert os.listdir(out) == []


def test_hostile_folder_names(clips: dict[str, Path], ffmpeg_exe: str, tmp_path: Path) -> None:
    """The pieces live beside the outputs: quotes, spaces and shell characters in the
    folders reach neither a shell nor the concat script."""
    folder = tmp_path / "it's $(x) [1] \\ 'q'"
    source = shutil.copyfile(clips["cfr"], tmp_path / "a 'b'.mp4")
    (result,) = _convert(ffmpeg_exe, [source], folder, 1.0).raise_for_failures()
    assert result.notes and result.outputs[0].parent == folder
    assert_like_source(result.outputs[0], clips["cfr"])


@given(
    st.lists(
        st.text(st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp")), min_size=1),
        min_size=1,
        max_size=5,
    )
)
def test_concat_script_quotes_any_name(paths: list[str]) -> None:
    """Each name is one single-quoted token of the concat script, read back as written
    (ffmpeg's av_get_token: inside quotes all is literal; ``'\\''`` ends, escapes, reopens)."""
    script = concat_list([(p, 1.5) for p in paths]).splitlines()
    assert script[0] == "ffconcat version 1.0"
    files = [line.removeprefix("file ") for line in script[1::2]]
    assert [_unquote(token) for token in files] == paths
    assert script[2::2] == ["duration 1.500000"] * len(paths)


def _unquote(token: str) -> str:
    """ffmpeg's av_get_token on one token (quotes and backslash escapes)."""
    out, quoted, i = [], False, 0
    while i < len(token):
        c = token[i]
        if c == "'":
            quoted = not quoted
        elif c == "\\" and not quoted:
            i += 1
            out.append(token[i])
        else:
            out.append(c)
        i += 1
    assert not quoted
    return "".join(out)


def test_a_stitch_that_fails_its_check_is_not_delivered(
    clips: dict[str, Path], ffmpeg_exe: str, tmp_path: Path
) -> None:
    wrapper = frame_dropping_ffmpeg(ffmpeg_exe, tmp_path)
    (result,) = _convert(str(wrapper), [clips["cfr"]], tmp_path / "out", 1.0)
    assert result.status == "failed"
    assert "failed its check" in (result.error or "")
    assert "124 video frames, the source has 125" in (result.error or "")
    assert os.listdir(tmp_path / "out") == []
