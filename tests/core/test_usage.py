"""Usage arithmetic and the timeline's lanes."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from batch_transcode import NodeSpan, Usage
from batch_transcode._usage import Capacity, lanes
from helpers import MediaFactory, run_python

T0 = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


class Ran:
    """What usage reads of a result: its task's start and end (a file encoded whole)."""

    pieces = ()

    def __init__(self, start: float | None, end: float | None) -> None:
        self.started = None if start is None else at(start)
        self.ended = None if end is None else at(end)


def test_usage_counts_each_node_to_its_removal_or_the_runs_end() -> None:
    capacity = Capacity(
        backend="azure",
        slots_per_node=2,
        nodes=[
            NodeSpan(node_id="a", allocated=at(0)),
            NodeSpan(node_id="b", allocated=at(10), removed=at(40)),
        ],
        ended=at(100),
    )
    usage = Usage.of(capacity, [Ran(20, 50), Ran(20, 80), Ran(None, None), Ran(30, 40)])
    assert usage.allocated_node_seconds == 100 + 30
    assert usage.busy_slot_seconds == 30 + 60 + 10 and usage.tasks == 3
    assert usage.utilisation == 100 / (130 * 2)
    assert usage.node_hours == 130 / 3600 and usage.cost(3600.0) == 130.0
    assert usage.started == at(0)
    assert "utilisation 38%" in usage.summary() and "2 nodes" in usage.summary()
    data = usage.to_dict(1.0)
    assert data["nodes"][1] == {
        "node_id": "b", "allocated": "2026-12-01T12:00:10.000Z", "removed": "2026-12-01T12:00:40.000Z"
    }  # fmt: skip
    assert data["cost"] == 0.04 and "cost" not in usage.to_dict()


def test_utilisation_stays_within_0_and_1() -> None:
    nothing = Usage.of(Capacity(backend="local", slots_per_node=4, nodes=[], ended=at(5)), [Ran(0, 5)])
    assert nothing.utilisation == 0.0  # nothing allocated
    one = [NodeSpan(node_id="a", allocated=at(1))]
    skewed = Usage.of(
        Capacity(backend="azure", slots_per_node=1, nodes=one, ended=at(5)),
        [Ran(0, 5)],  # clocks apart: the task seems to start before its node
    )
    assert skewed.utilisation == 1.0


spans = st.lists(
    st.tuples(st.sampled_from(["n1", "n2"]), st.floats(0, 100), st.floats(0.01, 30)), max_size=40
)


@given(spans)
def test_lanes_never_overlap_and_use_the_fewest_slots(raw: list[tuple[str, float, float]]) -> None:
    timed = [(node, at(start), at(start + length)) for node, start, length in raw]
    placed = lanes(timed)
    assert len(placed) == len(timed)
    for i, ((node, slot), (n, start, end)) in enumerate(zip(placed, timed, strict=True)):
        assert node == n
        others = [timed[j] for j, p in enumerate(placed) if p == (node, slot) and j != i]
        assert all(o[2] <= start or o[1] >= end for o in others)
    for node in {"n1", "n2"}:
        used = {slot for n, slot in placed if n == node}
        assert used == set(range(len(used)))  # slots 0..k-1, no gaps


@given(spans, st.integers(1, 3))
def test_lanes_keep_within_the_slots_a_node_has(raw: list[tuple[str, float, float]], slots: int) -> None:
    timed = [(node, at(start), at(start + length)) for node, start, length in raw]
    assert all(slot < slots for _, slot in lanes(timed, slots))


def test_runs_without_opentelemetry_installed(tmp_path: Path, make_media: MediaFactory) -> None:
    """opentelemetry-api is optional (the [otel] extra): a run in a process where it cannot
    be imported converts and reports as usual."""
    make_media(tmp_path / "in" / "a.mp4")
    script = (
        "import sys\n"
        "sys.modules['opentelemetry'] = None  # as if not installed\n"
        "from batch_transcode import LocalConfig, TranscodeSession, _telemetry\n"
        "assert _telemetry.otel_trace is None\n"
        "with TranscodeSession(LocalConfig(workers=1)) as s:\n"
        "    report = s.convert(['in/a.mp4'], output_dir='out')\n"
        "print(report.summary())\n"
        "print(report.usage.tasks)\n"
    )
    proc = run_python("-c", script, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0].startswith("1/1 converted") and proc.stdout.splitlines()[-1] == "1"
