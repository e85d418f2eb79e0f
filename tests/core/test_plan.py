from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from batch_transcode import LocalConfig, MissingInputError, Plan, TranscodeSession
from helpers import azure_config


def test_local_plan(tmp_path: Path, make_media: Callable[..., Path]) -> None:
    files = [make_media(tmp_path / f"{i}.mp4") for i in range(4)]
    plan = TranscodeSession(LocalConfig(workers=2)).plan(files)
    assert isinstance(plan, Plan)
    assert (plan.backend, plan.files, plan.nodes, plan.slots_per_node) == ("local", 4, 1, 2)
    assert plan.bytes_to_stage == 0 and plan.estimated_cost is None
    assert "files" in str(plan)


def test_azure_plan_counts_bytes_nodes_and_cost(tmp_path: Path, make_media: Callable[..., Path]) -> None:
    files = [make_media(tmp_path / f"{i}.mp4") for i in range(10)]
    size = sum(f.stat().st_size for f in files)
    cfg = azure_config(dedicated_nodes=2, spot_nodes=1, task_slots_per_node=4)
    plan = TranscodeSession(cfg).plan(files, price_per_node_hour=0.10)
    assert plan.bytes_to_stage == size
    assert (plan.nodes, plan.slots_per_node, plan.vm_size) == (3, 4, "Standard_D2s_v5")
    # 3 nodes for the pool start-up (300 s) plus the work: at least 0.25 node-hours.
    assert plan.node_hours >= 3 * 300 / 3600
    assert plan.estimated_cost == round(plan.node_hours * 0.10, 2)
    assert "estimated cost" in str(plan) and "<table>" in plan._repr_html_()


def test_autoscale_plan_is_bounded_by_max_nodes(tmp_path: Path, make_media: Callable[..., Path]) -> None:
    files = [make_media(tmp_path / f"{i}.mp4") for i in range(50)]
    cfg = azure_config(autoscale=True, max_nodes=4, task_slots_per_node=2)
    assert TranscodeSession(cfg).plan(files).nodes == 4


def test_plan_checks_inputs(tmp_path: Path) -> None:
    with pytest.raises(MissingInputError):
        TranscodeSession().plan([tmp_path / "nope.mp4"])


# -- the CPU estimate: media time x the measured CPU per media second -------------------


def _conversion_hours(plan: Plan, files: int) -> float:
    """A plan's node-hours without its per-task overhead (``pool_id`` given: no start-up)."""
    from batch_transcode._plan import TASK_OVERHEAD_SECONDS

    return plan.node_hours - files * TASK_OVERHEAD_SECONDS / plan.slots_per_node / 3600


def test_video_costs_more_than_audio_by_the_measured_ratio(
    tmp_path: Path, make_media: Callable[..., Path]
) -> None:
    from batch_transcode._video_cost import CPU_SECONDS_PER_MEDIA_SECOND as TABLE

    files = [make_media(tmp_path / f"{i}.mp4") for i in range(10)]  # 1 s of 64x48 video + tone
    # 2 slots on the 2 cores of a D2s_v5: a slot gets one core whatever the codec.
    cfg = azure_config(pool_id="existing", dedicated_nodes=1, task_slots_per_node=2)
    session = TranscodeSession(cfg)
    audio = session.plan(files, preset="mp3")
    video = session.plan(files, preset="h264-720p")
    assert audio.durations_from_headers == video.durations_from_headers == 10
    assert audio.media_seconds == pytest.approx(10.0, rel=0.05)
    assert (audio.cores_per_node, video.cores_per_node) == (2, 2)
    # A 48-line source stays 48 lines (never upscaled): the table's smallest row, 480.
    ratio = TABLE["h264", 480] / TABLE["mp3", 480]
    assert ratio > 20
    assert video.cpu_seconds / audio.cpu_seconds == pytest.approx(ratio)
    assert video.node_hours > audio.node_hours
    assert _conversion_hours(video, 10) / _conversion_hours(audio, 10) == pytest.approx(ratio)
    assert "CPU time" in str(video) and "from the files' headers" in video.assumptions


def test_without_headers_durations_come_from_sizes(tmp_path: Path, make_media: Callable[..., Path]) -> None:
    from batch_transcode import PRESETS
    from batch_transcode._naming import plan_work
    from batch_transcode._plan import ASSUMED_INPUT_KBPS, make_plan
    from batch_transcode._video_cost import CPU_SECONDS_PER_MEDIA_SECOND as TABLE

    files = [make_media(tmp_path / f"{i}.mp4") for i in range(3)]
    items = plan_work(files, tmp_path / "out", ["mp4"])
    plan = make_plan(items, LocalConfig(workers=1), presets=[PRESETS["h264-1080p"]], read_headers=False)
    seconds = sum(f.stat().st_size for f in files) * 8 / (ASSUMED_INPUT_KBPS * 1000)
    assert plan.durations_from_headers == 0
    assert plan.media_seconds == pytest.approx(seconds)
    # No header, no source size: the preset's own cap (1080 lines) is costed.
    assert plan.cpu_seconds == pytest.approx(seconds * TABLE["h264", 1080])
    assert f"from the files' sizes at {ASSUMED_INPUT_KBPS:g} kbit/s" in plan.assumptions


def test_many_files_read_a_sample_of_headers(
    tmp_path: Path, make_media: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    from batch_transcode import _plan

    monkeypatch.setattr(_plan, "PROBE_MAX_FILES", 3)
    files = [make_media(tmp_path / f"{i}.mp4") for i in range(7)]
    plan = TranscodeSession(LocalConfig(workers=2)).plan(files, preset="h264")
    assert plan.durations_from_headers == 3
    # The others take the sample's bit rate: the same files, so the same second each.
    assert plan.media_seconds == pytest.approx(7.0, rel=0.05)
    assert "headers of 3 of 7 files" in plan.assumptions and "3 of 7 durations" in str(plan)


def test_renditions_share_one_decode(tmp_path: Path, make_media: Callable[..., Path]) -> None:
    from batch_transcode._video_cost import decode_per_media_second

    files = [make_media(tmp_path / f"{i}.mp4") for i in range(2)]
    session = TranscodeSession(LocalConfig(workers=1))
    names = ["h264-1080p", "h264-720p", "h264-480p"]
    alone = {n: session.plan(files, preset=n).cpu_seconds for n in names}
    three = session.plan(files, preset=names)
    assert [n for n, _ in three.cpu_seconds_by_preset] == names
    decode = decode_per_media_second(48) * three.media_seconds  # the 64x48 sources' decode
    assert dict(three.cpu_seconds_by_preset) == pytest.approx(
        {"h264-1080p": alone["h264-1080p"]} | {n: alone[n] - decode for n in names[1:]}
    )
    assert three.cpu_seconds == pytest.approx(sum(alone.values()) - 2 * decode)


def test_a_larger_source_adds_its_decode() -> None:
    from batch_transcode import PRESETS
    from batch_transcode._plan import _Media, _pass_cpu
    from batch_transcode._video_cost import CPU_SECONDS_PER_MEDIA_SECOND as TABLE

    hd = _Media(10.0, True, (1920, 1080), True)
    rungs = [PRESETS[n] for n in ("h264-1080p", "h264-720p", "h264-480p")]
    decode = {h: TABLE["decode", h] * 10 for h in (480, 720, 1080)}
    alone = [_pass_cpu([p], hd, 0, 8.0)[0] for p in rungs]
    assert alone == pytest.approx(
        [
            TABLE["h264", 1080] * 10,
            TABLE["h264", 720] * 10 + decode[1080] - decode[720],
            TABLE["h264", 480] * 10 + decode[1080] - decode[480],
        ]
    )
    assert sum(_pass_cpu(rungs, hd, 0, 8.0)) == pytest.approx(sum(alone) - 2 * decode[1080])
    audio_only = _Media(10.0, True, None, True)  # a video preset on a source without video
    assert _pass_cpu([PRESETS["h264"]], audio_only, 0, 8.0) == pytest.approx([TABLE["aac", 1080] * 10])


@pytest.mark.parametrize(
    ("vm_size", "cores"),
    [("Standard_D2s_v5", 2), ("Standard_F16s_v2", 16), ("Standard_E8-2ds_v5", 2), ("Custom", None)],
)
def test_node_cores_from_the_vm_size(vm_size: str, cores: int | None) -> None:
    from batch_transcode._plan import node_cores

    assert node_cores(azure_config(vm_size=vm_size, dedicated_nodes=1)) == cores


def test_video_presets_cost_at_their_output_height() -> None:
    from batch_transcode import PRESETS
    from batch_transcode._video_cost import CPU_SECONDS_PER_MEDIA_SECOND as TABLE
    from batch_transcode._video_cost import cpu_per_media_second, video_output_height

    assert video_output_height(PRESETS["h264-720p"], (1920, 1080)) == 720
    assert video_output_height(PRESETS["h264-1080p"], (640, 360)) == 360  # never upscaled
    assert video_output_height(PRESETS["h264"], None) is None
    assert cpu_per_media_second("h264", 360) == TABLE["h264", 480]  # the row at or above
    assert cpu_per_media_second("h264", 720) == TABLE["h264", 720]
    assert cpu_per_media_second("h264", None) == TABLE["h264", 1080]
    assert cpu_per_media_second("h264", 2160) == pytest.approx(4 * TABLE["h264", 1080])  # pixels
    assert cpu_per_media_second("mp3", 2160) == TABLE["mp3", 1080]
