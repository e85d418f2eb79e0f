"""Quality measurement (VMAF, PSNR, SSIM) with the real ffmpeg on tiny generated clips:
the one-run argv, the log parsers on real logs, ``measure`` and its failures."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from batch_transcode import ConfigError
from batch_transcode._errors import QualityError
from batch_transcode._quality import (
    PSNR_CAP,
    Metric,
    Score,
    log_names,
    measure,
    parse_logs,
    parse_metrics,
    parse_psnr_stats,
    parse_ssim_stats,
    parse_vmaf_json,
    quality_argv,
)

ALL = (Metric.VMAF, Metric.PSNR, Metric.SSIM)
FRAMES = 50  # 2 s at 25 fps


def _ffmpeg(ffmpeg: str, *args: str) -> None:
    subprocess.run(
        [ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error", "-y", *args],
        check=True,
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory, ffmpeg_exe: str) -> dict[str, Path]:
    """A 2 s 320x240 source (lossless H.264, with a tone) and encodes of it: CRF 18,
    CRF 40, downscaled to 160x120, cut to its first second."""
    root = tmp_path_factory.mktemp("quality")
    source = root / "source.mp4"
    _ffmpeg(
        ffmpeg_exe, "-f", "lavfi", "-i", "testsrc2=duration=2:size=320x240:rate=25",
        "-f", "lavfi", "-i", "sine=frequency=440:duration=2",
        "-c:v", "libx264", "-preset", "ultrafast", "-qp", "0", "-pix_fmt", "yuv420p", "-c:a", "aac",
        "-shortest", str(source),
    )  # fmt: skip
    encodes = {
        "crf18": ["-crf", "18"],
        "crf40": ["-crf", "40"],
        "small": ["-crf", "23", "-vf", "scale=160:120"],
        "cut": ["-crf", "23", "-t", "1"],
    }
    clips = {"source": source}
    for name, args in encodes.items():
        clips[name] = root / f"{name}.mp4"
        _ffmpeg(
            ffmpeg_exe, "-i", str(source), "-c:v", "libx264", "-preset", "ultrafast", *args, str(clips[name])
        )
    clips["audio"] = root / "tone.mp3"
    _ffmpeg(ffmpeg_exe, "-f", "lavfi", "-i", "sine=frequency=440:duration=1", str(clips["audio"]))
    return clips


@pytest.fixture(scope="module")
def crf18(clips: dict[str, Path], ffmpeg_exe: str) -> dict[Metric, Score]:
    return measure(ffmpeg_exe, clips["source"], clips["crf18"], ALL)


def run_in(folder: Path, argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, cwd=folder, capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL
    )


def reader(folder: Path) -> Callable[[str], str | None]:
    return lambda name: (folder / name).read_text() if (folder / name).exists() else None


# -- metric names ----------------------------------------------------------------------


def test_metrics_from_a_string_a_sequence_or_none() -> None:
    assert parse_metrics("vmaf,psnr") == (Metric.VMAF, Metric.PSNR)
    assert parse_metrics(" VMAF , ssim,vmaf,") == (Metric.VMAF, Metric.SSIM)  # case, blanks, repeats
    assert parse_metrics(["psnr", Metric.SSIM]) == (Metric.PSNR, Metric.SSIM)
    assert parse_metrics(("psnr", "ssim", "vmaf")) == (Metric.PSNR, Metric.SSIM, Metric.VMAF)
    assert parse_metrics(Metric.VMAF) == (Metric.VMAF,)
    assert parse_metrics(None) == () == parse_metrics("") == parse_metrics([])
    assert Metric.VMAF == "vmaf" and f"{Metric.PSNR}" == "psnr"


def test_an_unknown_metric_is_a_config_error_listing_the_valid_ones() -> None:
    with pytest.raises(
        ConfigError, match=r"unknown quality metric 'vmfa'; choose from psnr, ssim, vmaf"
    ) as e:
        parse_metrics("vmfa,psnr")
    assert isinstance(e.value, ValueError)
    with pytest.raises(ConfigError, match=r"'ms-ssim', 3"):
        parse_metrics(["ssim", "ms-ssim", 3])  # type: ignore[list-item]
    with pytest.raises(ConfigError):
        measure("ffmpeg", "a.mp4", "b.mp4", "psnr,bogus")  # before anything runs


def test_log_names_are_fixed_by_the_output_index() -> None:
    assert log_names(0, ALL) == {
        Metric.VMAF: "quality-0-vmaf.json",
        Metric.PSNR: "quality-0-psnr.log",
        Metric.SSIM: "quality-0-ssim.log",
    }
    assert log_names(3, "ssim") == {Metric.SSIM: "quality-3-ssim.log"}
    with pytest.raises(ValueError, match="index"):
        log_names(-1, "ssim")


# -- the argv --------------------------------------------------------------------------


def test_one_run_measures_every_metric_into_its_log() -> None:
    argv = quality_argv("ffmpeg", "input/source.mp4", "output.mp4", ALL, index=2, threads=4)
    assert argv[:6] == ["ffmpeg", "-hide_banner", "-nostdin", "-nostats", "-loglevel", "error"]
    assert argv[6:10] == ["-i", "file:input/source.mp4", "-i", "file:output.mp4"]
    assert argv[-3:] == ["-f", "null", "-"]
    assert argv[12:-3] == ["-map", "[q0]", "-map", "[q1]", "-map", "[q2]"]
    graph = argv[argv.index("-filter_complex") + 1]
    assert "[1:v:0]setpts=PTS-STARTPTS,split=2[dist][size]" in graph  # the output, aligned
    assert "[0:v:0]setpts=PTS-STARTPTS[src]" in graph  # the source, aligned
    assert "[src][size]scale=w=rw:h=rh:flags=bicubic,format=yuv420p,setsar=1,split=3" in graph
    assert "libvmaf=n_threads=4:shortest=1:log_fmt=json:log_path=quality-2-vmaf.json[q0]" in graph
    assert "psnr=shortest=1:stats_file=quality-2-psnr.log[q1]" in graph
    assert "ssim=shortest=1:stats_file=quality-2-ssim.log[q2]" in graph
    assert re.search(r"\[dist0\]\[ref0\]libvmaf", graph)  # distorted first, as libvmaf wants


def test_one_metric_needs_no_split_and_logs_can_go_to_a_plain_folder() -> None:
    argv = quality_argv("ffmpeg", "a.mp4", "b.mp4", "psnr", log_dir="logs/q")
    graph = argv[argv.index("-filter_complex") + 1]
    assert "split=1" not in graph and "stats_file=logs/q/quality-0-psnr.log[q0]" in graph
    assert argv.count("-map") == 1


@pytest.mark.parametrize(
    "log_dir", ["/tmp/my logs", "a:b", "it's", "x,y", "[q]", "a;b", "c=d", "back\\slash"]
)
def test_a_log_folder_ffmpeg_would_need_escaped_is_refused(log_dir: str) -> None:
    with pytest.raises(ValueError, match="run ffmpeg in that directory"):
        quality_argv("ffmpeg", "a.mp4", "b.mp4", "vmaf", log_dir=log_dir)


def test_no_metric_or_no_thread_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one metric"):
        quality_argv("ffmpeg", "a.mp4", "b.mp4", ())
    with pytest.raises(ValueError, match="threads"):
        quality_argv("ffmpeg", "a.mp4", "b.mp4", "vmaf", threads=0)


PATHS = st.text(st.characters(exclude_characters="\0"), min_size=1)


@settings(max_examples=200)
@given(PATHS, PATHS)
def test_paths_are_single_file_words_and_never_reach_the_filter(source: str, output: str) -> None:
    argv = quality_argv("ffmpeg", source, output, ALL)
    assert argv[6:10] == ["-i", "file:" + source, "-i", "file:" + output]
    assert argv[argv.index("-filter_complex") + 1] == quality_argv("ffmpeg", "a", "b", ALL)[11]
    assert shlex.split(shlex.join(argv)) == argv  # a shell line gives the same words back


# -- parsers on real logs --------------------------------------------------------------


def _summary(stderr: str, pattern: str) -> float:
    found = re.findall(pattern, stderr)
    assert found, stderr
    return float(found[-1])


def test_parsers_read_real_logs_and_agree_with_ffmpegs_own_summary(
    clips: dict[str, Path], ffmpeg_exe: str, tmp_path: Path
) -> None:
    argv = quality_argv(ffmpeg_exe, str(clips["source"]), str(clips["crf40"]), ALL)
    argv[argv.index("error")] = "info"  # ffmpeg prints its summaries at info level
    proc = run_in(tmp_path, argv)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(log_names(0, ALL).values())

    vmaf = parse_vmaf_json((tmp_path / "quality-0-vmaf.json").read_text())
    psnr = parse_psnr_stats((tmp_path / "quality-0-psnr.log").read_text())
    ssim = parse_ssim_stats((tmp_path / "quality-0-ssim.log").read_text())
    assert vmaf.frames == psnr.frames == ssim.frames == FRAMES
    for s in (vmaf, psnr, ssim):
        assert s.min <= s.p5 <= s.mean
    assert vmaf.mean == pytest.approx(_summary(proc.stderr, r"VMAF score: ([\d.]+)"), abs=1e-3)
    assert psnr.mean == pytest.approx(_summary(proc.stderr, r"PSNR y:.* average:([\d.]+)"), abs=0.01)
    assert psnr.min == pytest.approx(_summary(proc.stderr, r"PSNR y:.* min:([\d.]+)"), abs=0.01)
    assert ssim.mean == pytest.approx(_summary(proc.stderr, r"SSIM Y:.* All:([\d.]+)"), abs=1e-5)
    assert parse_logs(ALL, reader(tmp_path)) == {Metric.VMAF: vmaf, Metric.PSNR: psnr, Metric.SSIM: ssim}


def test_psnr_of_identical_frames_is_capped_and_the_mean_is_the_psnr_of_the_mean_error() -> None:
    stats = "n:1 mse_avg:0.00 psnr_avg:inf \nn:2 mse_avg:0.00 psnr_avg:inf \n"
    assert parse_psnr_stats(stats) == Score(mean=PSNR_CAP, min=PSNR_CAP, p5=PSNR_CAP, frames=2)
    two = parse_psnr_stats("psnr_log_version:2 fields:n,psnr_avg\nn:1 psnr_avg:30.00 \nn:2 psnr_avg:50.00 \n")
    assert two.mean == pytest.approx(32.967, abs=1e-3)  # not 40: the bad frame's error dominates
    assert (two.min, two.frames) == (30.0, 2) and two.p5 == pytest.approx(31.0)
    assert parse_psnr_stats("n:1 psnr_avg:inf \nn:2 psnr_avg:40.00 \n").mean == pytest.approx(
        43.0103, abs=1e-4
    )


def test_a_log_without_frames_or_with_garbage_is_a_quality_error() -> None:
    for parse, text in (
        (parse_vmaf_json, '{"frames": []}'),
        (parse_vmaf_json, "<xml/>"),
        (parse_vmaf_json, '{"frames": [{"metrics": {}}]}'),
        (parse_psnr_stats, ""),
        (parse_ssim_stats, "n:1 Y:0.9 All:oops (1.0)"),
    ):
        with pytest.raises(QualityError):
            parse(text)


def test_logs_are_parsed_by_name_and_a_missing_one_is_named() -> None:
    logs = {"quality-1-ssim.log": "n:1 Y:0.95 U:0.9 V:0.9 All:0.94 (12.2)\nn:2 Y:1 U:1 V:1 All:0.96 (14)\n"}
    assert parse_logs("ssim", logs.get, index=1) == {
        Metric.SSIM: Score(mean=pytest.approx(0.95), min=0.94, p5=pytest.approx(0.941), frames=2)  # type: ignore[arg-type]
    }
    with pytest.raises(QualityError, match=r"no quality log quality-1-vmaf\.json"):
        parse_logs("ssim,vmaf", logs.get, index=1)


# -- measure ---------------------------------------------------------------------------


def test_measure_gives_vmaf_psnr_and_ssim_of_an_encode(crf18: dict[Metric, Score]) -> None:
    assert list(crf18) == list(ALL)
    assert 80 < crf18[Metric.VMAF].mean <= 100
    assert 35 < crf18[Metric.PSNR].mean < PSNR_CAP
    assert 0.95 < crf18[Metric.SSIM].mean <= 1
    assert {s.frames for s in crf18.values()} == {FRAMES}


def test_a_better_encode_scores_higher_on_every_metric(
    crf18: dict[Metric, Score], clips: dict[str, Path], ffmpeg_exe: str
) -> None:
    crf40 = measure(ffmpeg_exe, clips["source"], clips["crf40"], "vmaf,psnr,ssim")
    for metric in ALL:
        assert crf18[metric].mean > crf40[metric].mean, metric
        assert crf18[metric].p5 > crf40[metric].p5, metric


def test_a_downscaled_output_is_measured_against_the_source_scaled_to_it(
    clips: dict[str, Path], ffmpeg_exe: str
) -> None:
    small = measure(ffmpeg_exe, clips["source"], clips["small"], ALL)
    assert {s.frames for s in small.values()} == {FRAMES}
    assert small[Metric.VMAF].mean > 60 and small[Metric.PSNR].mean > 25 and small[Metric.SSIM].mean > 0.8


def test_an_output_shorter_than_its_source_is_measured_over_its_frames(
    clips: dict[str, Path], ffmpeg_exe: str
) -> None:
    cut = measure(ffmpeg_exe, clips["source"], clips["cut"], ALL, threads=1)
    assert {s.frames for s in cut.values()} == {FRAMES // 2}  # 1 s of 2
    assert cut[Metric.VMAF].mean > 80


def test_measure_with_no_metric_runs_nothing(clips: dict[str, Path]) -> None:
    assert measure("/no/such/ffmpeg", clips["source"], clips["crf18"], None) == {}


HOSTILE = ["-starts with a dash.mp4", 'it\'s "quoted".mp4', "$(touch pwned) `id`.mp4", "a:b;c,[d]=e\\f.mp4"]


def test_hostile_file_names_work(clips: dict[str, Path], ffmpeg_exe: str, tmp_path: Path) -> None:
    folder = tmp_path / "odd $HOME 'dir'"
    folder.mkdir()
    for name in HOSTILE:
        source, output = shutil.copy(clips["source"], folder / f"src {name}"), folder / name
        shutil.copy(clips["crf18"], output)
        scores = measure(ffmpeg_exe, source, output, "psnr")
        assert scores[Metric.PSNR].frames == FRAMES, name
    assert not list(tmp_path.rglob("pwned")) and not Path("pwned").exists()


def test_the_node_form_runs_as_a_quoted_shell_line_in_its_task_folder(
    clips: dict[str, Path], ffmpeg_exe: str, tmp_path: Path
) -> None:
    """What an Azure Batch task does: relative paths in its working folder, a shell line
    (every word quoted), logs left there to be uploaded and parsed by name."""
    (tmp_path / "input").mkdir()
    shutil.copy(clips["source"], tmp_path / "input" / "-source $(x).mp4")
    shutil.copy(clips["small"], tmp_path / "-out put.mp4")
    line = shlex.join(quality_argv(ffmpeg_exe, "input/-source $(x).mp4", "-out put.mp4", ALL, index=1))
    proc = subprocess.run(["sh", "-c", line], cwd=tmp_path, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    scores = parse_logs(ALL, reader(tmp_path), index=1)
    assert {s.frames for s in scores.values()} == {FRAMES}


def test_a_failed_measurement_is_a_quality_error_with_ffmpegs_words(
    clips: dict[str, Path], ffmpeg_exe: str, tmp_path: Path
) -> None:
    with pytest.raises(
        QualityError,
        match=r"^ffmpeg could not measure quality: the source or the output has no video stream "
        r"\(exit code \d+\)\n",
    ) as raised:
        measure(ffmpeg_exe, clips["source"], clips["audio"], ALL)  # no video to measure
    assert raised.value.output == str(clips["audio"]) and raised.value.source == str(clips["source"])
    assert raised.value.stderr_tail and raised.value.stderr_tail in str(raised.value)
    assert "(the quality filters)" in raised.value.stderr_tail and "setpts" not in str(raised.value)
    with pytest.raises(QualityError, match="exit code"):
        measure(ffmpeg_exe, clips["source"], tmp_path / "missing.mp4", "vmaf")
    with pytest.raises(QualityError, match="could not start ffmpeg"):
        measure(str(tmp_path / "no-ffmpeg"), clips["source"], clips["crf18"], "vmaf")


def test_a_measurement_stops_at_its_timeout_or_a_cancel(clips: dict[str, Path], ffmpeg_exe: str) -> None:
    with pytest.raises(QualityError, match="did not finish within 0 s"):
        measure(ffmpeg_exe, clips["source"], clips["crf18"], ALL, timeout=0)
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(QualityError, match="cancelled"):
        measure(ffmpeg_exe, clips["source"], clips["crf18"], ALL, cancel=cancel)
    done = measure(ffmpeg_exe, clips["source"], clips["crf18"], "ssim", timeout=60, cancel=threading.Event())
    assert done[Metric.SSIM].frames == FRAMES
