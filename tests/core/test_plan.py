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
