"""Plans: what a run would stage, on how many nodes, for about how long and how much.

A plan's time is CPU time: each file's media duration (read from its header, or from its
size) times the measured CPU seconds per media second of each of its outputs
(:mod:`batch_transcode._video_cost`), spread over the cores a task slot gets, plus a fixed
cost per task. Node-hours are the nodes' wall time, pool start-up included.
"""

from __future__ import annotations

import collections
import html
import math
import os
import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import attrs

from batch_transcode._config import AzureConfig, LocalConfig
from batch_transcode._errors import FFmpegNotFoundError
from batch_transcode._ffmpeg import InputInfo, find_ffmpeg, probe_input
from batch_transcode._naming import WorkItem
from batch_transcode._presets import PRESETS, VIDEO_CODECS, Preset
from batch_transcode._segments import STITCH_SHARE, even_pieces
from batch_transcode._split import MIN_SEGMENTS, split_refusal
from batch_transcode._video_cost import (
    audio_key_of_video,
    cost_key,
    cpu_per_media_second,
    decode_per_media_second,
    video_output_height,
)

__all__ = ["Plan", "make_plan"]

#: Assumed conversion throughput of one task slot, in input megabytes per second, for
#: presets the CPU table lacks (a custom format): download + demux + encode on one core.
DEFAULT_MB_PER_SECOND = 8.0
#: Fixed cost of one task: scheduling, resource-file download, ffmpeg start-up.
TASK_OVERHEAD_SECONDS = 3.0
#: A pool's time from creation until its nodes run tasks (allocation + start task).
POOL_STARTUP_SECONDS = 300.0
#: What each audio output beyond the first of a pass adds, as a share of its own cost
#: alone: the input is read once for all outputs, but each audio output is encoded on its
#: own, which is most of the work. A thumbnail costs a share of an MP3 of the same input
#: (it decodes a few video frames).
#: Measured by benchmarks/outputs.py (docs/performance.md, "Several outputs per input").
EXTRA_AUDIO_OUTPUT_SHARE = 1.0
EXTRA_IMAGE_OUTPUT_SHARE = 0.3
#: Assumed bit rate of the inputs (kbit/s), to turn input bytes into media seconds for
#: the output size estimate, and for the durations no header gave: a typical lecture or
#: talk video.
ASSUMED_INPUT_KBPS = 1500.0
#: Assumed bit rate (kbit/s) of each built-in output format, when its preset sets none.
OUTPUT_KBPS = {"mp3": 190.0, "m4a": 192.0, "opus": 128.0, "flac": 800.0, "wav": 1536.0}
#: Assumed size of one thumbnail (a JPEG frame) and of an output of unknown kind.
THUMBNAIL_BYTES = 60_000
#: Headers a plan reads (one ffmpeg process each, :data:`PROBE_THREADS` at once): all of
#: a run's files up to this many, else an evenly spread sample of this many, whose bit
#: rate gives the other files' durations from their sizes.
PROBE_MAX_FILES = 100
PROBE_THREADS = 4
PROBE_TIMEOUT_SECONDS = 20.0
#: The vCPUs in an Azure VM size's name (``Standard_D4s_v5``: 4; a constrained-core size,
#: ``Standard_E8-2ds_v5``, has the second number active).
_VM_CORES = re.compile(r"^(?:Standard|Basic)_[A-Za-z]+?(\d+)(?:-(\d+))?", re.IGNORECASE)


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
    #: The inputs' media time in seconds, and for how many files it was read from their
    #: headers (the others' from their size: see ``assumptions``).
    media_seconds: float = 0.0
    durations_from_headers: int = 0
    #: CPU seconds of the conversions (task overhead and pool start-up not included), in
    #: all and per preset name, in the run's order.
    cpu_seconds: float = 0.0
    cpu_seconds_by_preset: tuple[tuple[str, float], ...] = ()
    #: The cores of one node (this machine's locally) the estimate spreads the CPU over.
    cores_per_node: int = 0
    #: With ``segment_seconds``: the files it would split, into how many segments in all,
    #: and the estimated wall time without splitting.
    segment_seconds: float | None = None
    split_files: int = 0
    segments: int = 0
    unsplit_seconds: float | None = None

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
            ("media time", f"{_human_seconds(self.media_seconds)} ({self._durations_note()})"),
            ("CPU time", self._cpu_note()),
            ("estimated wall time", _human_seconds(self.estimated_seconds)),
            ("node-hours", f"{self.node_hours:.2f}"),
        ]
        if self.segment_seconds is not None:
            rows.append(("segments", self._segments_note()))
        cost = self.estimated_cost
        if cost is not None:
            rows.append(("estimated cost", f"{cost:.2f} (at {self.price_per_node_hour} per node-hour)"))
        return rows

    def _segments_note(self) -> str:
        if not self.split_files:
            return f"no file split at {self.segment_seconds:g} s"
        unsplit = _human_seconds(self.unsplit_seconds or 0.0)
        return (
            f"{self.split_files} of {self.files} files split into {self.segments} segments of about "
            f"{self.segment_seconds:g} s (wall time without splitting: {unsplit})"
        )

    def _durations_note(self) -> str:
        if self.durations_from_headers == self.files:
            return "durations from the headers"
        if self.durations_from_headers == 0:
            return "durations from the sizes"
        return f"{self.durations_from_headers} of {self.files} durations from the headers"

    def _cpu_note(self) -> str:
        text = _cpu_time(self.cpu_seconds)
        if len(self.cpu_seconds_by_preset) > 1:
            text += " (" + ", ".join(f"{n} {_cpu_time(c)}" for n, c in self.cpu_seconds_by_preset) + ")"
        if self.cores_per_node:
            where = "this machine's" if self.backend == "local" else "per node:"
            text += f", {where} {self.cores_per_node} cores"
        return text

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


def _cpu_time(s: float) -> str:
    return f"{s:.1f} s" if s < 10 else _human_seconds(s)


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


def node_cores(config: LocalConfig | AzureConfig) -> int | None:
    """The cores of one node: this machine's locally, the vCPUs the VM size's name says on
    Azure (``None`` for a name that does not say)."""
    if isinstance(config, LocalConfig):
        return os.cpu_count() or 1
    found = _VM_CORES.match(config.vm_size)
    if found is None:
        return None
    return int(found.group(2) or found.group(1))


@attrs.frozen
class _Media:
    """One input as the plan sees it: its media seconds, whether they came from its
    header, and its video size (``None``: no video; ``known`` False: not read)."""

    seconds: float
    from_header: bool
    video_size: tuple[int, int] | None
    known: bool


def _read_headers(config: LocalConfig | AzureConfig, paths: Sequence[Path]) -> list[InputInfo] | None:
    """The headers of ``paths`` (:func:`probe_input`, a few at once), or ``None`` when no
    ffmpeg is at hand here (the Azure nodes' own is not)."""
    try:
        ffmpeg = find_ffmpeg(config.ffmpeg if isinstance(config, LocalConfig) else None)
    except FFmpegNotFoundError:
        return None
    with ThreadPoolExecutor(PROBE_THREADS, thread_name_prefix="batch-transcode-plan") as pool:
        return list(pool.map(lambda p: probe_input(ffmpeg, str(p), PROBE_TIMEOUT_SECONDS), paths))


def _media(
    items: Sequence[WorkItem], sizes: Sequence[int], config: LocalConfig | AzureConfig, probe: bool
) -> tuple[list[_Media], str]:
    """Each input's media time and video size, and how they were found, in words.

    Headers are read for every file up to :data:`PROBE_MAX_FILES`, else for an evenly
    spread sample of that many; the other files (and those whose header gave no
    duration) take their duration from their size at the sample's bit rate, or at
    :data:`ASSUMED_INPUT_KBPS` without one, and the sample's commonest video size."""
    count = len(items)
    sample = sorted({n * count // PROBE_MAX_FILES for n in range(PROBE_MAX_FILES)}) if probe else []
    if count <= PROBE_MAX_FILES and probe:
        sample = list(range(count))
    infos = _read_headers(config, [items[n].source for n in sample]) if sample else None
    read: dict[int, InputInfo] = {}
    if infos is not None:
        read = {n: info for n, info in zip(sample, infos, strict=True) if info.duration}
    header_bytes = sum(sizes[n] for n in read)
    header_seconds = sum(info.duration or 0.0 for info in read.values())
    kbps = header_bytes * 8 / 1000 / header_seconds if header_seconds > 0 else ASSUMED_INPUT_KBPS
    common = collections.Counter(info.video_size for info in read.values()).most_common(1)
    media = [
        _Media(read[n].duration or 0.0, True, read[n].video_size, True)
        if n in read
        else _Media(sizes[n] * 8 / (kbps * 1000), False, common[0][0] if common else None, bool(common))
        for n in range(count)
    ]
    if len(read) == count:
        how = "durations and video sizes from the files' headers"
    elif not read:
        why = " (no ffmpeg here to read headers)" if sample and infos is None else ""
        how = f"durations from the files' sizes at {kbps:g} kbit/s{why}"
    else:
        how = (
            f"durations and video sizes from the headers of {len(read)} of {count} files; the "
            f"others' durations from their sizes at the {kbps:.0f} kbit/s those headers show"
        )
    return media, how


def _pass_cpu(presets: Sequence[Preset], media: _Media, size: int, mb_per_second: float) -> list[float]:
    """CPU seconds each of ``presets`` adds to the one pass converting an input.

    Alone, an output costs its row of the table over the media time, a video output
    also the decoding of a source larger than it (the ``decode`` rows: the source's less
    the output's own, which its row holds). In one pass the source's video is decoded once:
    the costliest video output carries that decode, the others (renditions) do without it.
    The first output costs in full, each audio output after it
    :data:`EXTRA_AUDIO_OUTPUT_SHARE` of its cost alone; a thumbnail
    :data:`EXTRA_IMAGE_OUTPUT_SHARE` of an MP3's."""
    seconds = media.seconds
    source = media.video_size[1] if media.video_size else None
    alone: list[float] = []
    decodes: list[float] = []  # the source's decode each video output holds
    for preset in presets:
        key = cost_key(preset)
        decode = 0.0
        if preset.video_only:  # a thumbnail: a few frames decoded
            cpu = EXTRA_IMAGE_OUTPUT_SHARE * cpu_per_media_second("mp3", source) * seconds
        elif preset.is_video and media.known and media.video_size is None:  # no video: its audio
            audio = audio_key_of_video(preset)
            cpu = 0.0 if audio is None else cpu_per_media_second(audio, None) * seconds
        elif preset.is_video and key is not None:
            out = video_output_height(preset, media.video_size if media.known else None)
            decode = decode_per_media_second(source if media.known else out) * seconds
            own = decode_per_media_second(out) * seconds
            cpu = cpu_per_media_second(key, out) * seconds + max(0.0, decode - own)
        elif key is not None:
            cpu = cpu_per_media_second(key, source) * seconds
        else:  # a format the table lacks: one core at mb_per_second
            cpu = size / (mb_per_second * 1e6)
        alone.append(cpu)
        decodes.append(decode)
    videos = [n for n, p in enumerate(presets) if p.is_video]
    costliest = max(videos, key=lambda n: alone[n]) if videos else None
    costs = []
    for n, preset in enumerate(presets):
        if preset.is_video:
            cpu = alone[n] if n == costliest else max(0.0, alone[n] - decodes[n])
        elif preset.video_only or n == 0:
            cpu = alone[n]
        else:
            cpu = EXTRA_AUDIO_OUTPUT_SHARE * alone[n]
        costs.append(cpu)
    return costs


def _assumptions(
    how: str, presets: Sequence[Preset], cores: int | None, per_task: float, mb_per_second: float
) -> str:
    """What an estimate assumes, in words."""
    video = any(p.is_video for p in presets)
    text = (
        f"{how}; CPU per media second as measured by benchmarks/video_cost.py (docs/performance.md: "
        f"each video codec at its default speed, on a test pattern)"
    )
    if any(cost_key(p) is None and not p.video_only for p in presets):
        text += f", presets it lacks at {mb_per_second:g} MB/s of input per core"
    other_speed = [
        f"{p.name} (speed {p.speed})"
        for p in presets
        if p.video_codec is not None and p.speed != VIDEO_CODECS[p.video_codec].default_speed
    ]
    if other_speed:
        text += f"; {', '.join(other_speed)} costed at its codec's default speed"
    if cores is None:
        text += "; one core per task slot (the VM size's name gives no core count)"
    elif video:
        text += f"; video tasks share the node's {cores} cores ({per_task:.3g} per task slot)"
    else:
        text += f"; audio tasks use a core each ({per_task:.3g} core per task slot)"
    text += f"; {TASK_OVERHEAD_SECONDS:g} s per task"
    if len(presets) > 1:
        text += (
            f"; one pass per file: the source's video decoded once for all video outputs, each audio "
            f"output beyond the first adding {EXTRA_AUDIO_OUTPUT_SHARE:.0%} of its cost alone, "
            f"a thumbnail {EXTRA_IMAGE_OUTPUT_SHARE:.0%} of an MP3's"
        )
    if presets:
        text += f"; inputs at {ASSUMED_INPUT_KBPS:g} kbit/s for the output sizes"
    return text


def _split_tasks(
    media: Sequence[_Media], task_seconds: Sequence[float], seconds: float
) -> tuple[list[float], dict[str, Any]]:
    """The tasks of a run splitting long files into segments of about ``seconds``, as
    :func:`~batch_transcode._segments.makespan` counts them (a keyframe everywhere): each
    segment its share of the file's encode plus the task overhead, and the stitch after
    the longest (so the longest task is a file's critical path); with the plan's fields
    counting the files split and the segments in all."""
    tasks: list[float] = []
    split = segments = 0
    for m, task in zip(media, task_seconds, strict=True):
        pieces = even_pieces(m.seconds, seconds, MIN_SEGMENTS) if m.seconds > 0 else [m.seconds]
        if len(pieces) < 2:
            tasks.append(task)
            continue
        split, segments = split + 1, segments + len(pieces)
        cpu = task - TASK_OVERHEAD_SECONDS
        shares = [TASK_OVERHEAD_SECONDS + cpu * piece / m.seconds for piece in pieces]
        shares[0] += TASK_OVERHEAD_SECONDS + cpu * STITCH_SHARE  # the stitch follows the longest
        tasks += shares
    return tasks, {"split_files": split, "segments": segments}


def _schedule(
    items: Sequence[WorkItem],
    config: LocalConfig | AzureConfig,
    sizes: Sequence[int],
    task_seconds: Sequence[float],
    slots: int,
) -> tuple[str, int, int, str | None, float | None, float]:
    """Where and how long the tasks run (``task_seconds``: one per task): backend, bytes
    staged, nodes, VM size, pool start-up (None locally) and the wall time, start-up included."""
    work = sum(task_seconds)
    longest = max(task_seconds, default=0.0)
    if isinstance(config, LocalConfig):
        return "local", 0, 1, None, None, max(work / slots, longest)
    if config.autoscale:
        nodes = max(1, min(config.max_nodes, math.ceil(len(task_seconds) / slots)))
    else:
        nodes = max(1, config.dedicated_nodes + config.spot_nodes)
    startup = 0.0 if config.pool_id else POOL_STARTUP_SECONDS
    return "azure", sum(sizes), nodes, config.vm_size, startup, startup + max(work / (nodes * slots), longest)


def make_plan(
    items: Sequence[WorkItem],
    config: LocalConfig | AzureConfig,
    *,
    presets: Sequence[Preset] = (),
    price_per_node_hour: float | None = None,
    mb_per_second: float = DEFAULT_MB_PER_SECOND,
    read_headers: bool = True,
    segment_seconds: float | None = None,
) -> Plan:
    """Estimate a run of ``items`` on ``config``'s backend, writing one output per preset
    of ``presets`` for each (none given: one MP3 each).

    Each file's conversion costs its media seconds times the CPU seconds per media second
    of each output (:mod:`batch_transcode._video_cost`); its task takes that over the
    cores one task slot gets, plus :data:`TASK_OVERHEAD_SECONDS`. ``read_headers`` reads
    durations and video sizes from the files (see :func:`_media`); False takes every
    duration from the file's size at :data:`ASSUMED_INPUT_KBPS`."""
    sizes = [item.source.stat().st_size for item in items]
    costed = presets or (PRESETS["mp3"],)
    media, how = _media(items, sizes, config, read_headers)
    per_file = [_pass_cpu(costed, m, size, mb_per_second) for m, size in zip(media, sizes, strict=True)]
    slots = config.workers if isinstance(config, LocalConfig) else config.task_slots_per_node
    cores = node_cores(config)
    video = any(p.is_video for p in costed)
    # a video encoder uses every core it gets; an audio one, one
    per_task = 1.0 if cores is None else cores / slots if video else min(1.0, cores / slots)
    task_seconds = [TASK_OVERHEAD_SECONDS + sum(costs) / per_task for costs in per_file]
    tasks, split = task_seconds, dict[str, Any]()
    if segment_seconds is not None and split_refusal(costed) is None:
        tasks, split = _split_tasks(media, task_seconds, segment_seconds)
        split["unsplit_seconds"] = _schedule(items, config, sizes, task_seconds, slots)[-1]
    backend, staged, nodes, vm_size, startup, seconds = _schedule(items, config, sizes, tasks, slots)
    node_hours = 0.0 if backend == "local" else nodes * seconds / 3600
    assumptions = _assumptions(how, costed, cores, per_task, mb_per_second)
    if startup is not None:
        assumptions += f"; and {startup:g} s of pool start-up (billed)"
    return Plan(
        backend=backend,
        files=len(items),
        bytes_to_stage=staged,
        nodes=nodes,
        slots_per_node=slots,
        vm_size=vm_size,
        estimated_seconds=seconds,
        node_hours=node_hours,
        price_per_node_hour=price_per_node_hour,
        assumptions=assumptions,
        outputs=len(items) * max(1, len(presets)),
        output_bytes=sum(output_bytes_estimate(size, p) for size in sizes for p in presets),
        media_seconds=sum(m.seconds for m in media),
        durations_from_headers=sum(m.from_header for m in media),
        cpu_seconds=sum(sum(costs) for costs in per_file),
        cpu_seconds_by_preset=tuple(
            (p.name, sum(costs[n] for costs in per_file)) for n, p in enumerate(costed)
        ),
        cores_per_node=cores or 0,
        segment_seconds=segment_seconds,
        **split,
    )
