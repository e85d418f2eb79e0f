"""Video on the offline Azure: renditions in one task, quality measured on the node, and
the pool's ffmpeg checked before anything runs on it."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import av
import pytest

from batch_transcode import ConfigError, Preset, StagedFFmpeg, TranscodeSession
from batch_transcode.testing import OfflineAzure
from helpers import session_jobs

pytestmark = pytest.mark.azure

FAST = {"speed": "ultrafast"}


def _clip(ffmpeg: str, path: Path, size: str = "640x480", seconds: float = 1.0) -> Path:
    """A constant-frame-rate H.264 clip with B-frames and a stereo tone."""
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            ffmpeg, "-hide_banner", "-loglevel", "error", "-y",
            "-f", "lavfi", "-i", f"testsrc2=size={size}:rate=25:duration={seconds}",
            "-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}",
            "-c:v", "libx264", "-preset", "veryfast", "-bf", "3", "-pix_fmt", "yuv420p",
            "-c:a", "aac", "-ac", "2", "-t", f"{seconds}", str(path),
        ],
        check=True,
        stdin=subprocess.DEVNULL,
        timeout=120,
    )  # fmt: skip
    return path


def _video(path: Path) -> tuple[str, int, int, int]:
    """Codec, width, height and frame count of the first video stream."""
    with av.open(str(path)) as box:
        stream = box.streams.video[0]
        frames = sum(1 for p in box.demux(stream) if p.size)
        return stream.codec_context.codec.canonical_name, stream.width, stream.height, frames


def _tasks_added(oa: OfflineAzure, before: int) -> list[str]:
    return [
        t["id"]
        for r in oa.batch.request_log[before:]
        if r.operation == "Tasks_CreateTaskCollection" and r.status == 200
        for t in json.loads(r.request_body)["value"]
    ]


def test_three_renditions_come_from_one_task_per_input(
    offline: OfflineAzure, tmp_path: Path, ffmpeg_exe: str
) -> None:
    sources = [_clip(ffmpeg_exe, tmp_path / "in" / f"talk {i}.mp4") for i in range(2)]
    ladder = [Preset.video(codec="h264", height=h, **FAST) for h in (480, 360, 240)]
    before = len(offline.batch.request_log)
    with TranscodeSession(offline.config()) as session:
        report = session.convert(sources, output_dir=tmp_path / "out", preset=[*ladder, "mp3"])
    assert report.ok, report.summary()
    assert sorted(_tasks_added(offline, before)) == ["t000000", "t000001"]  # one task per input
    for result in report:
        stem = result.source.stem
        assert [o.name for o in result.outputs] == [
            f"{stem}.h264-480p.mp4", f"{stem}.h264-360p.mp4", f"{stem}.h264-240p.mp4", f"{stem}.mp3",
        ]  # fmt: skip
        for output, height in zip(result.outputs, (480, 360, 240), strict=False):
            codec, width, got, frames = _video(output)
            assert (codec, got, width % 2, frames) == ("h264", height, 0, 25), output


def test_quality_is_measured_on_the_node(offline: OfflineAzure, tmp_path: Path, ffmpeg_exe: str) -> None:
    source = _clip(ffmpeg_exe, tmp_path / "in" / "clip.mp4", size="320x240")
    good = Preset.video(codec="h264", crf=18, name="good", **FAST)
    poor = Preset.video(codec="h264", crf=40, name="poor", **FAST)
    with TranscodeSession(offline.config()) as session:
        report = session.convert(
            [source], output_dir=tmp_path / "out", preset=[good, poor, "mp3"], quality="vmaf,psnr,ssim"
        )
    (result,) = report
    assert result.ok, result.error
    high, low, audio = result.quality
    assert audio is None and high is not None and low is not None
    for metric in ("vmaf", "psnr", "ssim"):
        assert high[metric].frames == 25 and high[metric].mean > low[metric].mean, metric
    assert 0 <= low["vmaf"].min <= low["vmaf"].p5 <= low["vmaf"].mean <= 100
    (entry,) = report.to_dict()["files"]
    assert set(entry["quality"][0]) == {"vmaf", "psnr", "ssim"} and entry["quality"][2] is None


def _ffmpeg_without(tmp_path: Path, ffmpeg_exe: str, encoder: str) -> Path:
    """A stand-in for a static ffmpeg whose build lists no ``encoder``."""
    fake = tmp_path / "staged" / "ffmpeg"
    fake.parent.mkdir(parents=True)
    fake.write_text(
        "#!/bin/sh\n"
        'case " $* " in\n'
        f'  *" -encoders "*) "{ffmpeg_exe}" "$@" | grep -v " {encoder} " ;;\n'
        f'  *) exec "{ffmpeg_exe}" "$@" ;;\n'
        "esac\n"
    )
    fake.chmod(0o755)
    return fake


def test_a_staged_ffmpeg_without_the_encoder_is_refused_before_any_pool_or_job(
    offline: OfflineAzure, tmp_path: Path, ffmpeg_exe: str
) -> None:
    source = _clip(ffmpeg_exe, tmp_path / "in" / "clip.mp4", size="320x240")
    fake = _ffmpeg_without(tmp_path, ffmpeg_exe, "libx265")
    before = len(offline.batch.request_log)
    config = offline.config(ffmpeg=StagedFFmpeg(binary=fake), auto_pool=True)
    refused = pytest.raises(
        ConfigError, match=r"preset 'hevc' needs the libx265 encoder.*staged for the pool"
    )
    with refused, TranscodeSession(config) as session:
        session.convert([source], output_dir=tmp_path / "out", preset="hevc")
    ops = {r.operation for r in offline.batch.request_log[before:]}
    assert "Pools_CreatePool" not in ops and "Jobs_CreateJob" not in ops  # an auto-pool comes with its job
    assert offline.leaks(timeout=30) == {"pools": [], "jobs": [], "containers": []}


def test_the_nodes_ffmpeg_is_checked_before_the_first_task(
    offline: OfflineAzure, tmp_path: Path, ffmpeg_exe: str
) -> None:
    source = _clip(ffmpeg_exe, tmp_path / "in" / "clip.mp4", size="320x240")
    unknown = Preset.custom("mkv", ["-c:v", "libnotanencoder", "-c:a", "copy"], name="exotic")
    before = len(offline.batch.request_log)
    refused = pytest.raises(ConfigError, match=r"libnotanencoder.*on the nodes of pool .*AptFFmpeg")
    with refused, TranscodeSession(offline.config()) as session:
        session.convert([source], output_dir=tmp_path / "out", preset=unknown)
    assert _tasks_added(offline, before) == []  # nothing ran on the pool
    assert session_jobs(offline, str(session.session_id))  # the job existed, and was removed
    assert offline.leaks(timeout=30) == {"pools": [], "jobs": [], "containers": []}
