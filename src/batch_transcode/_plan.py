"""Plans: what a run would stage, on how many nodes, for about how long and how much."""

from __future__ import annotations

import html
import math
from collections.abc import Sequence

import attrs

from batch_transcode._config import AzureConfig, LocalConfig
from batch_transcode._naming import WorkItem
from batch_transcode._presets import Preset

__all__ = ["Plan", "make_plan"]

#: Assumed conversion throughput of one task slot, in input megabytes per second
#: (audio extraction from typical video: download + demux + encode).
DEFAULT_MB_PER_SECOND = 8.0
#: Fixed cost of one task: scheduling, resource-file download, ffmpeg start-up.
TASK_OVERHEAD_SECONDS = 3.0
#: A pool's time from creation until its nodes run tasks (allocation + start task).
POOL_STARTUP_SECONDS = 300.0
#: What each output beyond the first adds to a task's conversion time, as a share of a
#: one-output task's: the input is read and decoded once for all outputs, but each audio
#: output is encoded on its own, which is most of the work (Opus costs more than MP3); a
#: thumbnail decodes a few video frames.
#: Measured by benchmarks/outputs.py (docs/performance.md, "Several outputs per input").
EXTRA_AUDIO_OUTPUT_SHARE = 1.0
EXTRA_IMAGE_OUTPUT_SHARE = 0.3
#: Assumed bit rate of the inputs (kbit/s), to turn input bytes into media seconds for
#: the output size estimate: a typical lecture or talk video.
ASSUMED_INPUT_KBPS = 1500.0
#: Assumed bit rate (kbit/s) of each built-in output format, when its preset sets none.
OUTPUT_KBPS = {"mp3": 190.0, "m4a": 192.0, "opus": 128.0, "flac": 800.0, "wav": 1536.0}
#: Assumed size of one thumbnail (a JPEG frame) and of an output of unknown kind.
THUMBNAIL_BYTES = 60_000


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
    #: Output files the run writes (files x presets) and their estimated size in bytes
    #: (what comes back from the nodes on Azure).
    outputs: int = 0
    output_bytes: int = 0

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
            ("outputs", f"{self.outputs} (about {_human_bytes(self.output_bytes)})"),
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


def _kbps(bitrate: str) -> float:
    return float(bitrate[:-1]) if bitrate[-1] in "kK" else float(bitrate) / 1000


def output_bytes_estimate(input_bytes: int, preset: Preset) -> int:
    """An output's size from its input's: media seconds at :data:`ASSUMED_INPUT_KBPS`, times
    the preset's bit rate (its ``bitrate``, else the format's usual one)."""
    if preset.video_only:
        return THUMBNAIL_BYTES
    if preset.is_video:  # its bitrate is its audio's: assume the input's own size
        return input_bytes
    seconds = input_bytes * 8 / (ASSUMED_INPUT_KBPS * 1000)
    kbps = _kbps(preset.bitrate) if preset.bitrate else OUTPUT_KBPS.get(preset.extension.lower())
    if kbps is None:  # a custom format (video, say): assume the input's own size
        return input_bytes
    return int(seconds * kbps * 1000 / 8)


def _assumptions(mb_per_second: float, presets: Sequence[Preset]) -> str:
    """What an estimate assumes, in words."""
    text = f"assumes {mb_per_second:g} MB/s of input per task slot and {TASK_OVERHEAD_SECONDS:g} s per task"
    if len(presets) > 1:
        text += (
            f", each output beyond the first adding {EXTRA_AUDIO_OUTPUT_SHARE:.0%} of that time "
            f"({EXTRA_IMAGE_OUTPUT_SHARE:.0%} for a thumbnail)"
        )
    if presets:
        text += f", inputs at {ASSUMED_INPUT_KBPS:g} kbit/s for the output sizes"
    return text


def make_plan(
    items: Sequence[WorkItem],
    config: LocalConfig | AzureConfig,
    *,
    presets: Sequence[Preset] = (),
    price_per_node_hour: float | None = None,
    mb_per_second: float = DEFAULT_MB_PER_SECOND,
) -> Plan:
    """Estimate a run of ``items`` on ``config``'s backend, writing one output per preset
    of ``presets`` for each (none given: one output each)."""
    sizes = [item.source.stat().st_size for item in items]
    per_file = max(1, len(presets))
    share = 1 + sum(
        EXTRA_IMAGE_OUTPUT_SHARE if p.video_only else EXTRA_AUDIO_OUTPUT_SHARE for p in presets[1:]
    )
    task_seconds = [TASK_OVERHEAD_SECONDS + share * size / (mb_per_second * 1e6) for size in sizes]
    work = sum(task_seconds)
    outputs = len(items) * per_file
    output_bytes = sum(output_bytes_estimate(size, p) for size in sizes for p in presets)
    assumptions = _assumptions(mb_per_second, presets)
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
            outputs=outputs,
            output_bytes=output_bytes,
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
        outputs=outputs,
        output_bytes=output_bytes,
    )
