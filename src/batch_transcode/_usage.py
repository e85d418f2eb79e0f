"""What a run used: each node's allocated span, the slots' busy time, utilisation, node-hours.

A backend says what it held (:class:`Capacity`: its nodes from allocation to removal, and
the task slots of each); the tasks' own start and end times (:attr:`FileResult.started
<batch_transcode.FileResult.started>`, ``ended``, or each of its ``pieces`` for a file
encoded in segments) say how much of it was busy.
:class:`Usage` puts the two together. On Azure Batch a node is billed while it is
allocated to the pool, busy or idle ("Batch pricing": you pay for the VMs a pool holds),
so ``node_hours`` is what a bill is made of and ``utilisation`` says how much of it ran
tasks.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

import attrs

__all__ = ["Capacity", "NodeSpan", "Usage", "lanes", "seconds"]


@attrs.define(frozen=True, kw_only=True)
class NodeSpan:
    """One node (or, locally, this machine) from its allocation to its removal.

    ``removed`` is ``None`` when the node was still allocated when the run ended (a
    session's pool is deleted when the session closes, after its runs' reports)."""

    node_id: str
    allocated: dt.datetime
    removed: dt.datetime | None = None

    def seconds(self, until: dt.datetime) -> float:
        """Allocated seconds up to ``until`` (or the removal, if earlier)."""
        end = until if self.removed is None else min(self.removed, until)
        return max(0.0, (end - self.allocated).total_seconds())


@attrs.define(frozen=True, kw_only=True)
class Capacity:
    """What a backend held for a run: its nodes and the task slots of each, up to ``ended``."""

    backend: str
    slots_per_node: int
    nodes: tuple[NodeSpan, ...] = attrs.field(converter=tuple[NodeSpan, ...])
    ended: dt.datetime


class _Span(Protocol):
    """The part of a :class:`~batch_transcode.TaskSpan` usage reads."""

    @property
    def started(self) -> dt.datetime: ...

    @property
    def ended(self) -> dt.datetime: ...


class _Timed(Protocol):
    """The part of a :class:`~batch_transcode.FileResult` usage reads."""

    @property
    def started(self) -> dt.datetime | None: ...

    @property
    def ended(self) -> dt.datetime | None: ...

    @property
    def pieces(self) -> Sequence[_Span]: ...


def _task_spans(results: Iterable[_Timed]) -> list[tuple[dt.datetime, dt.datetime]]:
    """Each task's start and end: a file's task, or each piece of a file encoded in segments."""
    spans: list[tuple[dt.datetime, dt.datetime]] = []
    for r in results:
        if r.pieces:
            spans.extend((p.started, p.ended) for p in r.pieces)
        elif r.started is not None and r.ended is not None:
            spans.append((r.started, r.ended))
    return spans


@attrs.define(frozen=True, kw_only=True)
class Usage:
    """A run's actual use of its nodes, beside what :meth:`TranscodeSession.plan` estimated.

    ``allocated_node_seconds``: each node from its allocation to its removal or the run's
    end; ``busy_slot_seconds``: the tasks' run times added up (from each task's start to
    its end, retries included; a file encoded in segments counts each of its segment,
    audio and stitch tasks, its ``pieces``), ``tasks`` how many; ``utilisation`` = busy /
    (allocated x slots per node), in [0, 1]; ``node_hours`` = allocated / 3600, what Azure
    bills. :meth:`cost` prices it.
    Locally the one "node" is this machine for the run's wall time, with ``workers`` slots.
    """

    backend: str
    slots_per_node: int
    nodes: tuple[NodeSpan, ...]
    ended: dt.datetime
    busy_slot_seconds: float
    tasks: int

    @classmethod
    def of(cls, capacity: Capacity, results: Iterable[_Timed]) -> Usage:
        """``capacity`` with the busy time of the timed ``results``."""
        spans = _task_spans(results)
        return cls(
            backend=capacity.backend,
            slots_per_node=capacity.slots_per_node,
            nodes=capacity.nodes,
            ended=capacity.ended,
            busy_slot_seconds=sum(max(0.0, (end - start).total_seconds()) for start, end in spans),
            tasks=len(spans),
        )

    @property
    def allocated_node_seconds(self) -> float:
        return sum(node.seconds(self.ended) for node in self.nodes)

    @property
    def node_hours(self) -> float:
        return self.allocated_node_seconds / 3600

    @property
    def utilisation(self) -> float:
        """The share of the allocated slot time that ran tasks (0 with nothing allocated)."""
        capacity = self.allocated_node_seconds * self.slots_per_node
        return 0.0 if capacity <= 0 else min(1.0, self.busy_slot_seconds / capacity)

    @property
    def started(self) -> dt.datetime | None:
        """The first node's allocation."""
        return min((n.allocated for n in self.nodes), default=None)

    def cost(self, price_per_node_hour: float) -> float:
        """``node_hours`` at ``price_per_node_hour`` (your VM size's price), rounded to cents."""
        return round(self.node_hours * price_per_node_hour, 2)

    def summary(self) -> str:
        """``used 0.0500 node-hours (2 nodes, 180 s allocated), utilisation 41% (148 of 360
        slot-seconds busy)``."""
        nodes = f"{len(self.nodes)} node" + ("" if len(self.nodes) == 1 else "s")
        capacity = self.allocated_node_seconds * self.slots_per_node
        return (
            f"used {self.node_hours:.4f} node-hours "
            f"({nodes}, {seconds(self.allocated_node_seconds)} s allocated), "
            f"utilisation {self.utilisation:.0%} ({seconds(self.busy_slot_seconds)} of "
            f"{seconds(capacity)} slot-seconds busy)"
        )

    def to_dict(self, price_per_node_hour: float | None = None) -> dict[str, Any]:
        """JSON-ready figures (``cost`` only with a price)."""
        data: dict[str, Any] = {
            "backend": self.backend,
            "nodes": [
                {
                    "node_id": n.node_id,
                    "allocated": _iso(n.allocated),
                    "removed": None if n.removed is None else _iso(n.removed),
                }
                for n in self.nodes
            ],
            "slots_per_node": self.slots_per_node,
            "allocated_node_seconds": round(self.allocated_node_seconds, 3),
            "busy_slot_seconds": round(self.busy_slot_seconds, 3),
            "utilisation": round(self.utilisation, 4),
            "node_hours": round(self.node_hours, 6),
            "tasks": self.tasks,
        }
        if price_per_node_hour is not None:
            data["cost"] = self.cost(price_per_node_hour)
        return data


def seconds(value: float) -> str:
    """Seconds as a report shows them: two decimals under 10, one under 100, else none."""
    return f"{value:.2f}" if value < 10 else f"{value:.1f}" if value < 100 else f"{value:.0f}"


def _iso(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def lanes(
    spans: Sequence[tuple[str, dt.datetime, dt.datetime]], slots: int | None = None
) -> list[tuple[str, int]]:
    """Each span's lane, as (node, slot): spans of one node packed into the fewest slots
    (the first slot free when it starts), in the order given. With ``slots``, a node
    never gets more: a span that starts a moment before another ends (the service stamps
    a task's end after its slot was freed) goes to the slot that frees first."""
    order = sorted(range(len(spans)), key=lambda i: (spans[i][0], spans[i][1]))
    free_at: dict[str, list[dt.datetime]] = {}
    placed: dict[int, tuple[str, int]] = {}
    for i in order:
        node, start, end = spans[i]
        held = free_at.setdefault(node, [])
        slot = next((k for k, free in enumerate(held) if free <= start), len(held))
        if slot == len(held) and slots is not None and len(held) >= slots:
            slot = min(range(len(held)), key=held.__getitem__)
        if slot == len(held):
            held.append(end)
        else:
            held[slot] = max(held[slot], end)
        placed[i] = (node, slot)
    return [placed[i] for i in range(len(spans))]
