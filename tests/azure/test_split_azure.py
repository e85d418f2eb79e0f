"""Long videos encoded in segments on the offline Azure: one task per segment, one for the
audio, a stitch depending on them (the emulator runs them for real); each output held to
its source (frames decoded, duration, audio start and length) and to the whole encode; a
failed segment fails its file only, its stitch never runs, and the job still ends."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from batch_transcode import AptFFmpeg, Report, StagedFFmpeg, TranscodeSession
from batch_transcode._azure import builders, names
from batch_transcode._azure.manifest import Manifest
from batch_transcode._azure.split import split_tasks
from batch_transcode._naming import WorkItem
from batch_transcode._split import plan_split
from batch_transcode.testing import Faults, OfflineAzure
from helpers import NOTHING_LEFT, azure_config, batch_client, kill_once_watching, session_jobs
from split_media import (
    H264,
    H264_SMALL,
    OPEN_GOP,
    X264,
    assert_like_source,
    frame_dropping_ffmpeg,
)

pytestmark = pytest.mark.azure


def _requests(oa: OfflineAzure, before: int, operation: str) -> list[dict[str, object]]:
    return [
        json.loads(r.request_body)
        for r in oa.batch.request_log[before:]
        if r.operation == operation and r.status in (200, 201)
    ]


def test_split_inputs_run_as_segment_audio_and_stitch_tasks(
    offline: OfflineAzure, clips: dict[str, Path], whole: Path, tmp_path: Path
) -> None:
    sources = [clips["cfr"], clips["vfr"], clips["silent"], clips["short"]]
    before = len(offline.batch.request_log)
    with TranscodeSession(offline.config()) as session:
        report = session.convert(
            sources, output_dir=tmp_path / "out", preset=[H264, H264_SMALL], segment_seconds=1
        )
        blobs = offline.blob_service_client().get_container_client(f"{session.session_id}-out")
        left = [b.name for b in blobs.list_blobs(name_starts_with=names.SEGMENTS_PREFIX)]
        listed = {t.id: t for t in batch_client(offline.batch).list_tasks(f"{session.session_id}-job")}
    assert report.ok, report.summary()
    (job,) = _requests(offline, before, "Jobs_CreateJob")
    assert job["usesTaskDependencies"] is True
    tasks = {
        t["id"]: t for body in _requests(offline, before, "Tasks_CreateTaskCollection") for t in body["value"]
    }  # type: ignore[attr-defined]
    # cfr: 5 segments and its audio; silent: 4 segments, no audio task; short: one task
    assert sorted(t for t in tasks if t.startswith("t000000")) == [
        "t000000", "t000000-a", *(f"t000000-s{n:04d}" for n in range(5))
    ]  # fmt: skip
    assert "t000002-a" not in tasks and "t000002-s0000" in tasks
    assert [t for t in tasks if t.startswith("t000003")] == ["t000003"]
    assert "dependsOn" not in tasks["t000003"]
    stitch = tasks["t000000"]
    assert sorted(stitch["dependsOn"]["taskIds"]) == sorted(t for t in tasks if t.startswith("t000000-"))  # type: ignore[index]
    assert all("sig=" in r["httpUrl"] and ".bt-segments" in r["httpUrl"] for r in stitch["resourceFiles"])  # type: ignore[attr-defined]
    assert left == []  # each file's pieces are deleted once it has its result
    for result in report:
        assert bool(result.notes) == (result.source != clips["short"]), result.notes
        for output in result.outputs:
            assert_like_source(output, result.source, whole / output.name)
    _assert_pieces_are_the_services_tasks(report, listed)


def _assert_pieces_are_the_services_tasks(report: Report, listed: dict[str | None, Any]) -> None:
    """Every task that ran is a piece of its split file (or a whole file's task) with the
    service's start, end and node; usage and the page count each of them."""
    cfr, _, silent, short = report
    assert sorted(p.label for p in cfr.pieces) == ["audio", *(f"seg {n}" for n in range(1, 6)), "stitch"]
    assert {p.kind for p in silent.pieces} == {"segment", "stitch"} and not short.pieces  # no audio
    pieces = [p for r in report for p in r.pieces]
    assert sorted(p.task_id or "" for p in pieces) == sorted(t for t in listed if t and t != "t000003")
    for p in pieces:
        info = listed[p.task_id].execution_info
        assert (p.started, p.ended) == (info.start_time, info.end_time)
        assert p.node == listed[p.task_id].node_info.node_id and p.status == "converted"
    assert cfr.started == min(p.started for p in cfr.pieces) and cfr.task_id == "t000000"
    usage = report.usage
    assert usage is not None and usage.tasks == len(listed)
    busy = sum(p.seconds for p in pieces) + (short.ended - short.started).total_seconds()  # type: ignore[operator]
    assert usage.busy_slot_seconds == pytest.approx(busy) and 0 < usage.utilisation <= 1
    page = report.to_html()
    assert page.count("<rect class='bar ") == len(listed) and page.count("data-piece='stitch'") == 3


def _failing_ffmpeg(ffmpeg: str, folder: Path) -> Path:
    """A staged ffmpeg that fails every segment encode starting 1.92 s in (the third of the
    CFR clip; no segment of the 29.97 fps clip starts there), the real one otherwise."""
    wrapper = folder / "ffmpeg"
    wrapper.write_text(
        "#!/bin/sh\n"
        'case "$*" in *"-ss 1.920000 -i file:input/"*) echo "segment exploded" >&2; exit 1;; esac\n'
        f'exec "{ffmpeg}" "$@"\n'
    )
    wrapper.chmod(0o755)
    return wrapper


def test_a_failed_segment_fails_its_file_only(
    offline: OfflineAzure, clips: dict[str, Path], tmp_path: Path, ffmpeg_exe: str
) -> None:
    config = offline.config(ffmpeg=StagedFFmpeg(binary=_failing_ffmpeg(ffmpeg_exe, tmp_path)))
    with TranscodeSession(config) as session:
        report = session.convert(
            [clips["cfr"], clips["silent"]], output_dir=tmp_path / "out", preset=[H264], segment_seconds=1
        )
        job_id = f"{session.session_id}-job"
        stitch = batch_client(offline.batch).get_task(job_id, "t000000")
        assert stitch.state == "completed"  # terminated: the job could end by itself
    failed, converted = report
    assert failed.status == "failed" and converted.ok, report.summary()
    assert "segment exploded" in (failed.error or "") and "segment 3" in (failed.error or "")
    assert failed.task_id == "t000000-s0002"
    assert [(p.label, p.status) for p in failed.pieces if p.status != "converted"] == [("seg 3", "failed")]
    assert not (tmp_path / "out" / "cfr.mp4").exists()
    assert_like_source(converted.outputs[0], clips["silent"])


def test_split_tasks_are_valid_and_keep_names_and_keys_out_of_command_lines(
    clips: dict[str, Path], spec_validate: Callable[[dict[str, Any], str], None]
) -> None:
    """Pure builders: every task matches the REST spec; the hostile file name is only in
    display names and blob paths; SAS URLs only in resource files and output containers."""
    plan = plan_split(clips["cfr"], [H264, H264_SMALL], 1.0)
    assert plan is not None
    hostile = "it's $(rm -rf ~) `x`.mp4"
    item = WorkItem(
        index=7,
        source=clips["cfr"],
        relative_source=hostile,
        outputs=(Path("/out/a.mp4"), Path("/out/b.mp4")),
    )
    tasks = split_tasks(
        config=azure_config(),
        setup=builders.ffmpeg_setup(AptFFmpeg(), None),
        job_id="bt-20261201t1200-1a2b3c4d-job",
        item=item,
        plan=plan,
        presets=[H264, H264_SMALL],
        input_url="https://acct.blob.core.windows.net/in/inputs/x?sig=INPUTSIG",
        output_container_url="https://acct.blob.core.windows.net/out?sig=OUTSIG",
        output_blob_names=names.output_blobs(item.relative_outputs),
        piece_url=lambda blob: f"https://acct.blob.core.windows.net/out/{blob}?sig=READSIG",
        quality=["psnr"],
    )
    ids = [t.id for t in tasks]
    assert ids == [*(f"t000007-s{s.index:04d}" for s in plan.schedule()), "t000007-a", "t000007"]
    for task in tasks:
        body = task.as_dict()
        spec_validate(body, "BatchTaskCreateOptions")
        assert "sig=" not in body["commandLine"] and "rm -rf" not in body["commandLine"]
    stitch = tasks[-1].as_dict()
    assert stitch["dependsOn"] == {"taskIds": ids[:-1]}
    fetched = {r["filePath"]: r["httpUrl"] for r in stitch["resourceFiles"]}
    assert fetched["segments-1.txt"].endswith("/t000007/segments-1.txt?sig=READSIG")
    assert fetched["input/source.mp4"].endswith("sig=INPUTSIG")  # quality measures against it
    assert {f"segment-{s.index:05d}-{r}.mp4" for s in plan.segments for r in (0, 1)} <= set(fetched)


def test_preempted_segments_rerun_alone(
    offline: OfflineAzure, clips: dict[str, Path], tmp_path: Path
) -> None:
    offline.set_faults(Faults(preempt_rate=0.5, seed=3))
    try:
        with TranscodeSession(offline.config(dedicated_nodes=0, spot_nodes=2)) as session:
            report = session.convert(
                [clips["cfr"]], output_dir=tmp_path / "out", preset=[H264], segment_seconds=1
            )
            (job_id,) = session_jobs(offline, str(session.session_id))
            tasks = offline.batch.tasks(job_id)
    finally:
        offline.set_faults(None)
    (result,) = report
    assert result.ok, result.error
    requeued = {t.id for t in tasks if t.requeue_count}
    assert requeued, "the fault did not preempt anything"
    assert all(t.retry_count == 0 for t in tasks)  # requeued by the service, not retried as failures
    assert_like_source(result.outputs[0], clips["cfr"])


CLIENT = """
import sys
from pathlib import Path
from batch_transcode import AzureConfig, Preset, TranscodeSession

config = AzureConfig.from_env(poll_interval=0.2, poll_interval_max=0.5, dedicated_nodes=1,
                              task_slots_per_node=1, session_timeout=600, task_timeout=300)
preset = Preset.video(codec="h264", speed="ultrafast", name="h264")
with TranscodeSession(config) as session:
    session.convert([Path(sys.argv[1])], output_dir=sys.argv[2], preset=preset, segment_seconds=1)
"""


def test_attach_after_sigkill_while_segments_run(
    offline: OfflineAzure, tmp_path: Path, ffmpeg_exe: str
) -> None:
    source = tmp_path / "long.mp4"
    subprocess.run(
        [ffmpeg_exe, "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i",
         "testsrc=size=160x120:rate=25:duration=12", "-f", "lavfi", "-i", "sine=duration=12",
         "-c:a", "aac", *X264, *OPEN_GOP, str(source)],
        check=True,
    )  # fmt: skip
    script = tmp_path / "client.py"
    script.write_text(CLIENT)
    kill_once_watching(offline, [sys.executable, str(script), str(source), str(tmp_path / "out")])
    job_id = next(j.id for j in offline.batch.jobs() if j.state != "deleting")
    unfinished = [t.id for t in offline.batch.tasks(job_id) if t.state != "completed"]
    assert any("-s" in t for t in unfinished), unfinished  # killed while segments ran
    segments = sorted(t.id for t in offline.batch.tasks(job_id) if "-s" in t.id)
    with TranscodeSession.attach(job_id, offline.config(), output_dir=tmp_path / "out") as job:
        report = job.wait()
    (result,) = report
    assert result.ok, result.error
    assert any("segments cut at keyframes" in n for n in result.notes)
    # the pieces done before the kill and after it, each once
    assert sorted(p.task_id for p in result.pieces if p.kind == "segment") == segments
    assert [p.kind for p in result.pieces].count("stitch") == 1
    assert_like_source(tmp_path / "out" / "long.mp4", source)
    assert offline.leaks(timeout=30) == NOTHING_LEFT


def test_quality_is_measured_on_the_stitched_output(
    offline: OfflineAzure, clips: dict[str, Path], tmp_path: Path
) -> None:
    with TranscodeSession(offline.config()) as session:
        report = session.convert(
            [clips["vfr"]], output_dir=tmp_path / "out", preset=[H264], segment_seconds=1, quality="psnr"
        )
    (result,) = report
    assert result.ok, result.error
    (scores,) = result.quality
    assert scores is not None and scores["psnr"].frames == 88 and scores["psnr"].mean > 30


def test_the_manifest_keeps_the_segment_length() -> None:
    now = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
    fields: dict[str, Any] = {
        "session_id": "bt-x", "job_id": "bt-x-job", "created_at": now, "deadline": now,
        "pool_id": None, "delete_pool": False, "input_container": "bt-x-in",
        "delete_input_container": True, "output_container": "bt-x-out",
        "delete_output_container": True, "presets": (H264,), "files": (),
    }  # fmt: skip
    manifest = Manifest(**fields, segment_seconds=30.0)
    assert Manifest.from_json(manifest.to_json()).segment_seconds == 30.0
    body = json.loads(Manifest(**fields).to_json())
    del body["segment_seconds"]  # written before splitting existed: not split
    assert Manifest.from_json(json.dumps(body).encode()).segment_seconds is None


def test_a_stitch_that_fails_its_check_is_not_delivered(
    offline: OfflineAzure, clips: dict[str, Path], tmp_path: Path, ffmpeg_exe: str
) -> None:
    config = offline.config(ffmpeg=StagedFFmpeg(binary=frame_dropping_ffmpeg(ffmpeg_exe, tmp_path)))
    with TranscodeSession(config) as session:
        (result,) = session.convert(
            [clips["cfr"]], output_dir=tmp_path / "out", preset=[H264], segment_seconds=1
        )
    assert result.status == "failed" and result.task_id == "t000000"
    assert "124 video frames, the source has 125" in (result.error or "")
    assert list((tmp_path / "out").iterdir()) == []


def test_segments_of_one_gop(
    offline: OfflineAzure, clips: dict[str, Path], whole: Path, tmp_path: Path
) -> None:
    plan = plan_split(clips["cfr"], [H264], 12 / 25)
    assert plan is not None and {s.frames for s in plan.segments[:-1]} == {12}
    with TranscodeSession(offline.config()) as session:
        (result,) = session.convert(
            [clips["cfr"]], output_dir=tmp_path / "out", preset=[H264], segment_seconds=12 / 25
        )
    assert result.ok, result.error
    assert f"encoded in {len(plan.segments)} segments" in result.notes[0]
    assert_like_source(result.outputs[0], clips["cfr"], whole / "cfr.h264.mp4")
