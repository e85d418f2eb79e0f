"""Plans: what a run would stage, on how many nodes, for about how long and how much."""

from __future__ import annotations

import html
import math
from collections.abc import Sequence

import attrs

from batch_transcode._config import AzureConfig, LocalConfig
from batch_transcode._naming import WorkItem

__all__ = ["Plan", "make_plan"]

#: Assumed conversion throughput of one task slot, in input megabytes per second
#: (audio extraction from typical video: download + demux + encode).
DEFAULT_MB_PER_SECOND = 8.0
#: Fixed cost of one task: scheduling, resource-file download, ffmpeg start-up.
TASK_OVERHEAD_SECONDS = 3.0
#: A pool's time from creation until its nodes run tasks (allocation + start task).
POOL_STARTUP_SECONDS = 300.0


@attrs.define(frozen=True, kw_only=True)
class Plan:
    """An estimate, made before anything runs. No online price lookup: the cost is
    ``node_hours`` times the ``price_per_node_hour`` you pass (None: no cost shown)."""

    backend: str
    files: int
    bytes_to_stage: int
    nodes: int
    slots_per_node: int
    vm_size: str | None
    estimated_seconds: float
    node_hours: float
    price_per_node_hour: float | None
    assumptions: str

    @property
    def estimated_cost(self) -> float | None:
        if self.price_per_node_hour is None:
            return None
        return round(self.node_hours * self.price_per_node_hour, 2)

    def _rows(self) -> list[tuple[str, str]]:
        rows = [
            ("backend", self.backend),
            ("files", f"{self.files}"),
            ("bytes to stage", _human_bytes(self.bytes_to_stage)),
            ("nodes", f"{self.nodes}" + (f" x {self.vm_size}" if self.vm_size else "")),
            ("slots per node", f"{self.slots_per_node}"),
            ("estimated wall time", _human_seconds(self.estimated_seconds)),
            ("node-hours", f"{self.node_hours:.2f}"),
        ]
        cost = self.estimated_cost
        if cost is not None:
            rows.append(("estimated cost", f"{cost:.2f} (at {self.price_per_node_hour} per node-hour)"))
        return rows

    def __str__(self) -> str:
        width = max(len(k) for k, _ in self._rows())
        lines = [f"{k.ljust(width)}  {v}" for k, v in self._rows()]
        return "\n".join([*lines, f"({self.assumptions})"])

    def _repr_html_(self) -> str:
        body = "".join(
            f"<tr><th style='text-align:left'>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>"
            for k, v in self._rows()
        )
        return f"<table>{body}</table><p><small>{html.escape(self.assumptions)}</small></p>"


def _human_bytes(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def _human_seconds(s: float) -> str:
    if s < 120:
        return f"{s:.0f} s"
    if s < 7200:
        return f"{s / 60:.0f} min"
    return f"{s / 3600:.1f} h"


def make_plan(
    items: Sequence[WorkItem],
    config: LocalConfig | AzureConfig,
    *,
    price_per_node_hour: float | None = None,
    mb_per_second: float = DEFAULT_MB_PER_SECOND,
) -> Plan:
    """Estimate a run of ``items`` on ``config``'s backend."""
    sizes = [item.source.stat().st_size for item in items]
    task_seconds = [TASK_OVERHEAD_SECONDS + size / (mb_per_second * 1e6) for size in sizes]
    work = sum(task_seconds)
    assumptions = (
        f"assumes {mb_per_second:g} MB/s of input per task slot and {TASK_OVERHEAD_SECONDS:g} s per task"
    )
    if isinstance(config, LocalConfig):
        slots = config.workers
        seconds = max(work / slots, max(task_seconds, default=0.0))
        return Plan(
            backend="local",
            files=len(items),
            bytes_to_stage=0,
            nodes=1,
            slots_per_node=slots,
            vm_size=None,
            estimated_seconds=seconds,
            node_hours=0.0,
            price_per_node_hour=price_per_node_hour,
            assumptions=assumptions,
        )
    slots = config.task_slots_per_node
    if config.autoscale:
        nodes = max(1, min(config.max_nodes, math.ceil(len(items) / slots)))
    else:
        nodes = max(1, config.dedicated_nodes + config.spot_nodes)
    run_seconds = max(work / (nodes * slots), max(task_seconds, default=0.0))
    startup = 0.0 if config.pool_id else POOL_STARTUP_SECONDS
    seconds = startup + run_seconds
    return Plan(
        backend="azure",
        files=len(items),
        bytes_to_stage=sum(sizes),
        nodes=nodes,
        slots_per_node=slots,
        vm_size=config.vm_size,
        estimated_seconds=seconds,
        node_hours=nodes * seconds / 3600,
        price_per_node_hour=price_per_node_hour,
        assumptions=assumptions + f", and {startup:g} s of pool start-up (billed)",
    )
