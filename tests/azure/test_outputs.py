"""Several outputs per input on OfflineAzure: one task and one input upload per input,
every output uploaded by the task and downloaded, loudness and thumbnails measured on
what comes back."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from batch_transcode import PRESETS, Preset, TranscodeSession
from batch_transcode._azure.manifest import Manifest, ManifestFile
from batch_transcode.testing import OfflineAzure
from helpers import (
    NOTHING_LEFT,
    DurationOf,
    MediaFactory,
    integrated_loudness,
    make_talk,
    partial_files,
    session_resources,
    stream_info,
)

pytestmark = pytest.mark.azure


def test_one_task_per_input_writes_every_output(
    offline: OfflineAzure, tmp_path: Path, make_media: MediaFactory, duration_of: DurationOf, ffmpeg_exe: str
) -> None:
    src = tmp_path / "in"
    good = [make_media(src / "day 1" / "talk.mp4"), make_media(src / "$(touch PWNED).mp4")]
    silent = make_media(src / "silent.mp4", kind="silent")
    radio = make_talk(ffmpeg_exe, src / "radio.m4a", seconds=2, video=False)
    inputs = [*good, silent, radio]
    out = tmp_path / "out"
    before = len(offline.batch.request_log)
    with TranscodeSession(offline.config(dedicated_nodes=1, task_slots_per_node=4)) as session:
        report = session.convert(inputs, output_dir=out, preset=["mp3", "opus", "thumbnail"])
        session_id = str(session.session_id)
        staged = offline.blob_service_client().get_container_client(f"{session_id}-in").list_blobs()
        uploaded = {b.name: b.size for b in staged}
    # one task per input, and each input uploaded once
    log = offline.batch.request_log[before:]
    added = [
        t["id"]
        for e in log
        if e.operation == "Tasks_CreateTaskCollection"
        for t in json.loads(e.request_body)["value"]
    ]
    assert sorted(added) == [f"t{i:06d}" for i in range(len(inputs))]
    assert sorted(uploaded.values()) == sorted(p.stat().st_size for p in inputs)

    by_source = {r.source: r for r in report}
    for source in good:
        result = by_source[source]
        assert result.ok, result.error
        stem = out / source.relative_to(src).with_suffix("")
        assert result.outputs == (
            stem.with_name(stem.name + ".mp3"),
            stem.with_name(stem.name + ".opus"),
            stem.with_name(stem.name + ".jpg"),
        )
        for audio in result.outputs[:2]:
            duration = duration_of(audio)
            assert duration is not None and abs(duration - 1.0) < 0.15, (audio, duration)
        assert "Video: mjpeg" in stream_info(ffmpeg_exe, result.outputs[2])
    assert by_source[silent].status == "failed" and by_source[silent].outputs == ()
    assert (by_source[silent].error or "").startswith("the input has no audio stream to convert (output mp3")
    assert by_source[radio].status == "failed"
    assert (by_source[radio].error or "").startswith("the input has no video stream for the thumbnail")
    assert sorted(p.name for p in out.rglob("*") if p.is_file()) == sorted(
        [
            "talk.mp3",
            "talk.opus",
            "talk.jpg",
            "$(touch PWNED).mp3",
            "$(touch PWNED).opus",
            "$(touch PWNED).jpg",
        ]
    )
    assert not partial_files(out)
    assert not list(tmp_path.rglob("PWNED")) and not Path("PWNED").exists()
    assert session_resources(offline, session_id) == NOTHING_LEFT


def test_loudness_and_thumbnail_time_on_the_nodes(
    offline: OfflineAzure, tmp_path: Path, ffmpeg_exe: str
) -> None:
    source = make_talk(ffmpeg_exe, tmp_path / "in" / "talk.mp4", seconds=12)
    presets = [
        PRESETS["mp3"].with_audio(loudness=-16, bitrate="96k"),
        PRESETS["opus"].with_audio(loudness=-16, channels=1),
        Preset.thumbnail(at=6, width=32),
    ]
    with TranscodeSession(offline.config()) as session:
        report = session.convert([source], output_dir=tmp_path / "out", preset=presets)
    assert report.ok, report.summary()
    mp3, opus, jpg = report[0].outputs
    for output in (mp3, opus):
        measured = integrated_loudness(ffmpeg_exe, output)
        assert abs(measured + 16) <= 1.0, (output.name, measured)
    assert "mono" in stream_info(ffmpeg_exe, opus)
    assert "32x24" in stream_info(ffmpeg_exe, jpg)


def test_a_thumbnail_past_the_end_fails_the_task_with_the_reason(
    offline: OfflineAzure, tmp_path: Path, make_media: MediaFactory
) -> None:
    source = make_media(tmp_path / "in" / "short.mp4")
    with TranscodeSession(offline.config()) as session:
        report = session.convert(
            [source], output_dir=tmp_path / "out", preset=["mp3", Preset.thumbnail(at=30)]
        )
    result = report[0]
    assert result.status == "failed" and result.task_id == "t000000"
    assert (result.error or "").startswith("no video frame at 30 s for the thumbnail")
    assert not (tmp_path / "out" / "short.mp3").exists()


def test_manifest_keeps_every_preset_and_output() -> None:
    presets = (
        PRESETS["mp3"].with_audio(loudness=-16),
        PRESETS["opus"],
        Preset.thumbnail(fraction=0.5, width=64),
    )
    now = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
    manifest = Manifest(
        session_id="bt-x",
        job_id="bt-x-job",
        created_at=now,
        deadline=now,
        pool_id="bt-x-pool",
        delete_pool=True,
        input_container="bt-x-in",
        delete_input_container=True,
        output_container="bt-x-out",
        delete_output_container=True,
        presets=presets,
        files=(
            ManifestFile(
                index=0,
                source="/data/a.mp4",
                relative_source="a.mp4",
                relative_outputs=("a.mp3", "a.opus", "a.jpg"),
            ),
        ),
    )
    body = json.loads(manifest.to_json())
    assert "preset" not in body and [p["name"] for p in body["presets"]] == ["mp3", "opus", "thumbnail"]
    again = Manifest.from_json(manifest.to_json())
    assert again.presets == presets
    (item,) = again.work_items(Path("/restore"))
    assert item.outputs == (Path("/restore/a.mp3"), Path("/restore/a.opus"), Path("/restore/a.jpg"))
    # a manifest of a format this version does not know is refused, not guessed at
    body["format"] = 2
    with pytest.raises(ValueError, match="unknown manifest format"):
        Manifest.from_json(json.dumps(body).encode())


def test_thumbnail_at_a_fraction_is_placed_on_the_node(
    offline: OfflineAzure, tmp_path: Path, ffmpeg_exe: str
) -> None:
    from helpers import make_red_then_blue, mean_colour

    clip = make_red_then_blue(ffmpeg_exe, tmp_path / "in" / "clip.mp4", seconds=4)
    raw = make_red_then_blue(ffmpeg_exe, tmp_path / "in" / "raw.m4v", seconds=4, raw=True)
    presets = ["mp3", Preset.thumbnail(fraction=0.75)]
    with TranscodeSession(offline.config()) as session:
        report = session.convert([clip, raw], output_dir=tmp_path / "out", preset=presets)
    placed, unknown = report
    assert placed.ok, placed.error
    r, _, b = mean_colour(ffmpeg_exe, placed.outputs[1])
    assert b > 200 and r < 50, (r, b)  # 3 s into a clip that turns blue at 2 s
    assert unknown.status == "failed"
    assert (unknown.error or "").startswith("the input's duration is unknown")
