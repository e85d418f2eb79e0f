"""What a run on OfflineAzure used: each task's start, end and node from the service's own
task records, and the nodes' allocated time against the emulator's node log."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from batch_transcode import TranscodeSession
from batch_transcode._usage import lanes
from batch_transcode.testing import OfflineAzure
from helpers import MediaFactory

pytestmark = pytest.mark.azure

SCHEMA = json.loads((Path(__file__).resolve().parents[2] / "docs" / "report.schema.json").read_text())


def test_usage_and_task_times_match_the_emulators_records(
    offline: OfflineAzure, tmp_path: Path, make_media: MediaFactory
) -> None:
    inputs = [make_media(tmp_path / "in" / f"talk {n}.mp4") for n in range(5)]
    inputs.append(make_media(tmp_path / "in" / "silent.mp4", kind="silent"))  # fails: no audio
    with TranscodeSession(offline.config(dedicated_nodes=2, task_slots_per_node=2)) as session:
        plan = session.plan(inputs, output_dir=tmp_path / "out", preset="mp3", price_per_node_hour=0.5)
        report = session.convert(inputs, output_dir=tmp_path / "out", preset="mp3")
        pool_id = f"{session.session_id}-pool"
        tasks = {t.id: t for job in offline.batch.jobs() for t in offline.batch.tasks(job.id)}
    log = [r for r in offline.batch.node_log() if r.pool_id == pool_id]
    assert len(log) == 2 and all(r.removed is not None for r in log)  # removed at teardown

    usage = report.usage
    assert usage is not None and usage.backend == "azure" and usage.slots_per_node == 2
    assert {n.node_id: n.allocated for n in usage.nodes} == {r.node_id: r.allocated for r in log}
    # each node from its allocation to the run's end (its removal came after, at teardown)
    logged = sum(((min(r.removed, usage.ended) if r.removed else usage.ended) - r.allocated).total_seconds()
                 for r in log)  # fmt: skip
    assert logged > 0 and abs(usage.allocated_node_seconds - logged) <= 0.05 * logged
    assert 0.0 < usage.utilisation <= 1.0
    assert usage.tasks == 6 and usage.busy_slot_seconds > 0

    for r in report:
        assert r.task_id is not None and r.started is not None and r.ended is not None
        assert r.started <= r.ended <= usage.ended
        task = tasks[r.task_id]
        assert r.node == task.node_id and r.node in {n.node_id for n in usage.nodes}
        assert (r.retries, r.requeues) == (task.retry_count, task.requeue_count)
    # no node ran more tasks at once than it has slots (a task holds its slot to its end)
    spans = [(r.node or "", r.started, r.ended) for r in report if r.started and r.ended]
    assert max(slot for _, slot in lanes(spans)) < usage.slots_per_node
    busy = sum((r.ended - r.started).total_seconds() for r in report if r.started and r.ended)
    assert usage.busy_slot_seconds == pytest.approx(busy)

    data = json.loads(json.dumps(report.to_dict()))
    jsonschema.validate(data, SCHEMA)
    assert data["usage"]["tasks"] == 6 and 0 <= data["usage"]["utilisation"] <= 1
    # the plan the session made for these files, beside what they used
    assert report.plan is plan and data["usage"]["plan"]["node_hours"] == round(plan.node_hours, 6)
    assert data["usage"]["cost"] == usage.cost(0.5) and data["usage"]["plan"]["estimated_cost"] is not None
    assert "used 0.0" in report.summary() and f"(plan: {plan.node_hours:.4f} node-hours" in report.summary()

    page = report.to_html()
    assert "<th scope='col'>plan</th>" in page
    assert page.count("<rect class='bar ") == 6 and page.count("<tr class='file ") == 6
    assert all(f">{n.node_id} / slot 1<" in page for n in usage.nodes)  # a lane per node slot
