"""Quality measured by a run (``convert(..., quality=...)``, ``--quality``) on the local
backend, with the real ffmpeg on a tiny generated clip: which outputs are scored, what a
result and the JSON report carry, the checks made before anything runs, and failures
that become notes."""

from __future__ import annotations

import json
import math
import stat
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from batch_transcode import (
    ConfigError,
    FileResult,
    LocalConfig,
    Metric,
    Preset,
    Report,
    Score,
    TranscodeSession,
)
from batch_transcode._cli import main

SCHEMA = json.loads((Path(__file__).resolve().parents[2] / "docs" / "report.schema.json").read_text())
FRAMES = 50  # 2 s at 25 fps
ALL = "vmaf,psnr,ssim"

#: Fast encodes: the measurement, not the encode, is under test.
FAST_720P = Preset.video(codec="h264", height=720, crf=23, speed="ultrafast", name="fast-720p")
CRF18 = Preset.video(codec="h264", crf=18, speed="ultrafast", name="crf18")
CRF40 = Preset.video(codec="h264", crf=40, speed="ultrafast", name="crf40")
#: A video preset whose output has no video (``-vn`` after the map): it converts, but
#: there is nothing to measure.
NO_VIDEO = Preset.video(codec="h264", speed="ultrafast", args=["-vn"], name="novideo")


def _ffmpeg(ffmpeg: str, *args: str) -> None:
    subprocess.run(
        [ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error", "-y", *args],
        check=True,
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory, ffmpeg_exe: str) -> Path:
    """A 2 s 320x240 clip at 25 fps (lossless H.264, moving detail) with a tone."""
    path = tmp_path_factory.mktemp("quality-runs") / "clip.mp4"
    _ffmpeg(
        ffmpeg_exe, "-f", "lavfi", "-i", "testsrc2=duration=2:size=320x240:rate=25",
        "-f", "lavfi", "-i", "sine=frequency=440:duration=2",
        "-c:v", "libx264", "-preset", "ultrafast", "-qp", "0", "-pix_fmt", "yuv420p", "-c:a", "aac",
        "-shortest", str(path),
    )  # fmt: skip
    return path


def convert(source: Path, output_dir: Path, **kwargs: Any) -> Report:
    with TranscodeSession(LocalConfig(workers=2)) as s:
        return s.convert([source], output_dir=output_dir, **kwargs)


@pytest.fixture(scope="module")
def ladder(source: Path, tmp_path_factory: pytest.TempPathFactory) -> Report:
    """The clip to a 720p-capped H.264 (so: not upscaled), an MP3 and a thumbnail, with
    every metric."""
    out = tmp_path_factory.mktemp("ladder")
    return convert(source, out, preset=[FAST_720P, "mp3", "thumbnail"], quality=ALL)


def check_score(score: Score, low: float, high: float) -> None:
    assert isinstance(score, Score)
    assert score.frames == FRAMES
    assert low <= score.min <= score.p5 <= score.mean <= high, score
    assert all(math.isfinite(v) for v in (score.mean, score.min, score.p5))


def test_only_the_video_output_is_measured(ladder: Report) -> None:
    (result,) = ladder
    assert result.status == "converted" and result.ok
    assert [p.suffix for p in result.outputs] == [".mp4", ".mp3", ".jpg"]
    video, mp3, thumbnail = result.quality
    assert mp3 is None and thumbnail is None
    assert video is not None and set(video) == {"vmaf", "psnr", "ssim"}
    assert video[Metric.VMAF] is video["vmaf"]  # a Metric is its name
    check_score(video["vmaf"], 50, 100)  # CRF 23 of a 320x240 clip: good, not perfect
    check_score(video["psnr"], 30, 100)
    check_score(video["ssim"], 0.8, 1)
    assert video["vmaf"].mean < 100 and video["psnr"].mean < 100


def test_a_small_source_is_noted_as_not_upscaled(ladder: Report) -> None:
    (result,) = ladder
    note = "fast-720p: the source is 320x240, smaller than 720 pixels high: kept at its size, not upscaled"
    assert result.notes == (note,)  # the measurement itself left no note
    assert ladder.to_dict()["files"][0]["notes"] == [note]


def test_the_json_report_names_each_metric_and_follows_the_schema(ladder: Report) -> None:
    data = json.loads(json.dumps(ladder.to_dict()))
    jsonschema.validate(data, SCHEMA)
    (entry,) = data["files"]
    video, mp3, thumbnail = entry["quality"]
    assert mp3 is None and thumbnail is None
    assert list(video) == ["vmaf", "psnr", "ssim"]
    for name, score in video.items():
        assert set(score) == {"mean", "min", "p5", "frames"}, name
        assert score["frames"] == FRAMES
        assert score["min"] <= score["p5"] <= score["mean"]
    assert video["vmaf"]["mean"] == round(ladder[0].quality[0]["vmaf"].mean, 3)  # type: ignore[index]


def test_the_summary_has_a_quality_line(ladder: Report) -> None:
    line = ladder.summary().splitlines()[-1]
    assert line.startswith("quality of 1 output: VMAF ")
    assert "PSNR" in line and "dB" in line and "SSIM" in line


def test_a_lower_crf_scores_higher(source: Path, tmp_path: Path) -> None:
    report = convert(source, tmp_path / "out", preset=[CRF18, CRF40], quality=[Metric.VMAF, "psnr", "SSIM"])
    best, worst = report[0].quality
    assert best is not None and worst is not None
    for metric in Metric:
        assert best[metric].mean > worst[metric].mean, metric
        assert best[metric].p5 > worst[metric].p5, metric


def test_files_skipped_as_already_done_are_not_measured_again(source: Path, tmp_path: Path) -> None:
    first = convert(source, tmp_path / "out", preset=CRF40, quality="psnr")
    assert first[0].quality[0] is not None
    again = convert(source, tmp_path / "out", preset=CRF40, quality="psnr")
    assert again[0].status == "skipped" and again[0].quality == ()
    assert "(1 already done, skipped)" in again.summary() and "quality" not in again.summary()


def test_no_quality_asked_for_none_measured(source: Path, tmp_path: Path) -> None:
    report = convert(source, tmp_path / "out", preset=CRF40, quality=None)
    assert report[0].quality == ()
    assert report.to_dict()["files"][0]["quality"] == []
    assert "quality" not in report.summary()


@pytest.mark.parametrize(
    ("quality", "preset", "match"),
    [
        ("vmaf,nope", CRF40, r"unknown quality metric 'nope'; choose from psnr, ssim, vmaf"),
        (["psnr", "VMAF", 3], CRF40, r"unknown quality metric 3"),
        ("psnr", ["mp3", "thumbnail"], r"measures video outputs, and the presets mp3\+thumbnail write none"),
    ],
)
def test_bad_quality_raises_before_anything_runs(
    source: Path, tmp_path: Path, quality: Any, preset: Any, match: str
) -> None:
    with TranscodeSession(LocalConfig(workers=1)) as s:
        with pytest.raises(ConfigError, match=match):
            s.submit([source], output_dir=tmp_path / "out", preset=preset, quality=quality)
        with pytest.raises(ConfigError, match=match):
            s.convert([source], output_dir=tmp_path / "out", preset=preset, quality=quality)
    assert not (tmp_path / "out").exists()


def test_a_failed_measurement_is_a_note_and_the_file_stays_converted(source: Path, tmp_path: Path) -> None:
    report = convert(source, tmp_path / "out", preset=NO_VIDEO, quality="vmaf,psnr")
    (result,) = report
    assert report.ok and result.status == "converted" and result.output == tmp_path / "out" / "clip.mp4"
    assert result.output.stat().st_size > 0
    assert result.quality == (None,)
    (note,) = result.notes
    assert note.startswith("quality not measured for clip.mp4: ffmpeg could not measure quality")
    assert "has no video stream" in note.splitlines()[0]
    assert report.summary().splitlines()[-1] == "quality: 1 output not measured"
    jsonschema.validate(report.to_dict(), SCHEMA)


def _without_libvmaf(ffmpeg: str, folder: Path) -> Path:
    """An ffmpeg that runs ``ffmpeg``, but whose ``-filters`` listing lacks libvmaf, as a
    build without it (Debian's) lists."""
    fake = folder / "ffmpeg-no-vmaf"
    fake.write_text(
        "#!/bin/sh\n"
        'case " $* " in\n'
        f'  *" -filters "*) "{ffmpeg}" "$@" | grep -v " libvmaf " ;;\n'
        f'  *) exec "{ffmpeg}" "$@" ;;\n'
        "esac\n",
        encoding="utf-8",
    )
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    return fake


def test_vmaf_needs_an_ffmpeg_with_libvmaf(source: Path, tmp_path: Path, ffmpeg_exe: str) -> None:
    fake = _without_libvmaf(ffmpeg_exe, tmp_path)
    out = tmp_path / "out"
    with TranscodeSession(LocalConfig(workers=1, ffmpeg=fake)) as s:
        with pytest.raises(ConfigError) as info:
            s.convert([source], output_dir=out, preset=CRF40, quality="psnr,vmaf")
        message = str(info.value)
        assert message.startswith(
            f"quality metric vmaf needs the libvmaf filter, which the ffmpeg on this machine ({fake}) lacks"
        )
        assert "pip install 'batch-transcode[local]'" in message and "quality=" in message
        assert not list(out.glob("*.mp4"))  # checked before the first file
        # the metrics it has are measured
        report = s.convert([source], output_dir=out, preset=CRF40, quality="psnr,ssim")
    scores: Mapping[str, Score] | None = report[0].quality[0]
    assert scores is not None and set(scores) == {"psnr", "ssim"}


def test_quality_needs_ffmpeg_7_1_and_an_older_one_is_refused_first(
    source: Path, tmp_path: Path, ffmpeg_exe: str
) -> None:
    fake = tmp_path / "ffmpeg-6.1"
    fake.write_text(
        "#!/bin/sh\n"
        'case " $* " in\n'
        '  *" -version "*) echo "ffmpeg version 6.1.1-3ubuntu5 Copyright (c) 2000-2023" ;;\n'
        f'  *) exec "{ffmpeg_exe}" "$@" ;;\n'
        "esac\n",
        encoding="utf-8",
    )
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    out = tmp_path / "out"
    with TranscodeSession(LocalConfig(workers=1, ffmpeg=fake)) as s:
        with pytest.raises(
            ConfigError, match=r"measuring quality needs FFmpeg 7\.1 or newer \(this one is 6\.1\)"
        ):
            s.convert([source], output_dir=out, preset=CRF40, quality="psnr")
        assert not list(out.glob("*.mp4"))  # checked before the first file
        assert s.convert([source], output_dir=out, preset=CRF40).ok  # without quality it runs


def test_a_result_reaches_progress_with_its_scores(source: Path, tmp_path: Path) -> None:
    """The file's one result is reported once measured: the scores are in it."""
    finished: list[FileResult] = []
    with TranscodeSession(LocalConfig(workers=1)) as s:
        job = s.submit(
            [source],
            output_dir=tmp_path / "out",
            preset=CRF40,
            quality="ssim",
            progress=lambda e: finished.append(e.result) if e.result is not None else None,
        )
        (streamed,) = job.as_completed(timeout=120)
    assert finished == [streamed]
    assert streamed.quality[0] is not None and set(streamed.quality[0]) == {"ssim"}


# -- the command line -------------------------------------------------------------------


def test_cli_quality_prints_a_quality_line_and_writes_scores(
    source: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    args = ["convert", str(source), "--to", "h264-480p,mp3", "--quality", "vmaf", "-o", str(out)]
    assert main([*args, "--no-progress", "--json", "-"]) == 0
    captured = capsys.readouterr()
    data = json.loads(captured.out)
    jsonschema.validate(data, SCHEMA)
    video, mp3 = data["files"][0]["quality"]
    assert list(video) == ["vmaf"] and mp3 is None
    assert 50 < video["vmaf"]["mean"] <= 100 and video["vmaf"]["frames"] == FRAMES
    assert "h264-480p: the source is 320x240, smaller than 480 pixels high" in data["files"][0]["notes"][0]
    assert "\nquality of 1 output: VMAF " in captured.err  # the text goes to stderr with --json -
    assert "not measured" not in captured.err  # an MP3 is not a failed measurement


def test_cli_unknown_metric_is_a_usage_error(
    source: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        main(["convert", str(source), "--to", "h264", "--quality", "vmaf,nope", "-o", str(tmp_path / "o")])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "argument --quality: unknown quality metric 'nope'; choose from psnr, ssim, vmaf" in err
    with pytest.raises(SystemExit) as info:
        main(["convert", str(source), "--quality", ",", "-o", str(tmp_path / "o")])
    assert info.value.code == 2
    assert "names no metric" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_cli_quality_without_a_video_preset_exits_2(
    source: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["convert", str(source), "--quality", "psnr", "-o", str(tmp_path / "o"), "--no-progress"])
    assert code == 2
    assert "measures video outputs, and the presets mp3 write none" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
