"""Results of a run: :class:`FileResult` per input and the :class:`Report` over them."""

from __future__ import annotations

import datetime as dt
import enum
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal, overload

import attrs

from batch_transcode import _page
from batch_transcode._errors import TranscodeFailedError
from batch_transcode._usage import Usage, lanes, seconds

if TYPE_CHECKING:  # value types only: the report never measures anything
    from batch_transcode._plan import Plan
    from batch_transcode._quality import Metric, Score

__all__ = [
    "STATUSES",
    "FileResult",
    "PieceKind",
    "ProgressEvent",
    "Report",
    "Status",
    "TaskSpan",
    "with_pieces",
]


#: Our temporary output names (``.bt-<12 hex>.part.<ext>``, see ``_ffmpeg.temporary_output``),
#: with the folder and quotes ffmpeg prints around them.
_TEMPORARY_OUTPUT = re.compile(r"""['"]?(?:[^\s'"]*/)?\.bt-[0-9a-f]{12}\.part\.\w+['"]?""")


def _plain_error(error: str | None) -> str | None:
    """``error`` with our temporary output names said as "the output": a user never
    sees those files (they are renamed when complete, removed when not)."""
    return None if error is None else _TEMPORARY_OUTPUT.sub("the output", error)


class Status(enum.StrEnum):
    """What happened to one input file. A ``str``: ``result.status == "converted"`` holds,
    and JSON writes the plain word."""

    #: Converted by this run.
    CONVERTED = "converted"
    #: Its outputs were already there from an earlier run, and were kept as they are.
    SKIPPED = "skipped"
    #: ffmpeg (or the node running it) could not convert it; ``error`` says why.
    FAILED = "failed"
    #: The run stopped before the file was done.
    CANCELLED = "cancelled"


#: Every status, in the order reports count them.
STATUSES: tuple[Status, ...] = tuple(Status)


class PieceKind(enum.StrEnum):
    """Which task of a file encoded in segments (``segment_seconds=``) a :class:`TaskSpan` is."""

    #: One segment's video.
    SEGMENT = "segment"
    #: The whole audio, encoded once.
    AUDIO = "audio"
    #: The join of the segments with the audio: the file's output.
    STITCH = "stitch"


@attrs.define(frozen=True, kw_only=True)
class TaskSpan:
    """One task that ran for a file encoded in segments: a segment, the audio or the stitch.

    ``index`` is the segment's number from 0 (``None`` for the audio and the stitch);
    ``status`` is ``"converted"`` when its encode (or the stitch and its check) succeeded,
    else ``"failed"`` or ``"cancelled"``. ``started`` and ``ended`` (UTC) are when it held
    its slot: on Azure Batch its ``executionInfo`` (last attempt), locally measured by
    the worker that ran it; ``node`` and ``task_id`` say where (``None`` locally);
    ``retries`` and ``requeues`` count the service's reruns of it.
    """

    kind: PieceKind = attrs.field(converter=PieceKind)
    status: Status = attrs.field(converter=Status)
    started: dt.datetime
    ended: dt.datetime
    index: int | None = None
    node: str | None = None
    task_id: str | None = None
    retries: int = 0
    requeues: int = 0

    @property
    def seconds(self) -> float:
        """How long it held its slot."""
        return max(0.0, (self.ended - self.started).total_seconds())

    @property
    def label(self) -> str:
        """``seg 3`` (numbered from 1, as a reader counts), ``audio`` or ``stitch``."""
        if self.kind is PieceKind.SEGMENT:
            return f"seg {(self.index or 0) + 1}"
        return self.kind.value

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (see :meth:`Report.to_dict`)."""
        return {
            "kind": self.kind.value,
            "index": self.index,
            "status": self.status.value,
            "started": _iso(self.started),
            "ended": _iso(self.ended),
            "node": self.node,
            "task_id": self.task_id,
            "retries": self.retries,
            "requeues": self.requeues,
        }


@attrs.define(frozen=True, kw_only=True, init=False)
class FileResult:
    """The outcome for one input file.

    ``status`` is a :class:`Status`, a ``str``: ``"converted"``, ``"skipped"`` (the
    output was already there from an earlier run and was kept as it is), ``"failed"``
    or ``"cancelled"`` (the run stopped before the file was done). ``ok``, ``skipped``
    and ``cancelled`` follow from it (``ok``: converted or skipped); ``error`` is
    ``None`` when ``ok``, else one line saying why, followed by the tail of ffmpeg's
    stderr where there is one (the temporary file ffmpeg wrote to is called "the
    output" there).

    ``outputs`` holds every output path, in the presets' order, when a run writes
    several outputs per input (``preset=["mp3", "opus", "thumbnail"]``); ``output`` is
    the first. Both are empty/``None`` unless ``ok``.

    ``quality`` holds, when the run measured quality (``quality=("vmaf", ...)``), one
    entry per output in the same order: a read-only mapping of metric name (``"vmaf"``,
    ``"psnr"``, ``"ssim"``) to its :class:`~batch_transcode._quality.Score`, or ``None``
    for an output that was not measured (an audio output, or a measurement that failed:
    ``notes`` then says why). It is empty when quality was not measured. ``notes`` are
    remarks that do not change the status (a measurement that failed, say).

    ``started`` and ``ended`` (timezone-aware, UTC) are when the file's task ran: on
    Azure Batch the task's ``executionInfo`` start and end times of its last attempt,
    locally when its worker took it and let it go; ``node`` is the Azure Batch node that
    ran it (``None`` locally); ``retries`` and ``requeues`` count the service's retries
    and requeues of the task (a preempted Spot node requeues it). All are ``None``/0 for
    a file that never ran (skipped, cancelled before it started).

    ``pieces`` holds, for a file encoded in segments (``segment_seconds=``), one
    :class:`TaskSpan` per task that ran for it (its segments, its audio, its stitch), in
    the order they started; it is empty for a file encoded whole. For such a file
    ``started`` and ``ended`` span its pieces (the first's start to the last's end),
    ``node`` is the stitch's node, and ``retries`` and ``requeues`` add up its pieces'.

    Made with a status (a :class:`Status` or its value), or by :meth:`converted`,
    :meth:`already_done`, :meth:`failure` and :meth:`cancellation`.
    """

    source: Path
    output: Path | None
    status: Status
    error: str | None = None
    seconds: float | None = None
    task_id: str | None = None
    outputs: tuple[Path, ...] = ()
    # Mappings are not hashable: a result hashes by its other fields.
    quality: tuple[Mapping[str, Score] | None, ...] = attrs.field(default=(), hash=False)
    notes: tuple[str, ...] = ()
    started: dt.datetime | None = None
    ended: dt.datetime | None = None
    node: str | None = None
    retries: int = 0
    requeues: int = 0
    pieces: tuple[TaskSpan, ...] = ()

    def __init__(
        self,
        *,
        source: Path,
        output: Path | None,
        status: Status | str,
        error: str | None = None,
        seconds: float | None = None,
        task_id: str | None = None,
        outputs: Sequence[Path] | None = None,
        quality: Sequence[Mapping[Metric, Score] | Mapping[str, Score] | None] | None = None,
        notes: Sequence[str] = (),
        started: dt.datetime | None = None,
        ended: dt.datetime | None = None,
        node: str | None = None,
        retries: int = 0,
        requeues: int = 0,
        pieces: Sequence[TaskSpan] = (),
    ) -> None:
        try:
            status = Status(status)
        except ValueError:
            raise ValueError(f"status must be one of {', '.join(STATUSES)}, got {status!r}") from None
        if outputs is None:
            all_outputs: tuple[Path, ...] = () if output is None else (output,)
        else:
            all_outputs = tuple(outputs)
            if output is None and all_outputs:
                output = all_outputs[0]
            elif all_outputs and output != all_outputs[0]:
                raise ValueError("output must be the first of outputs")
        quality = quality or ()
        if quality and len(quality) != len(all_outputs):
            raise ValueError(
                f"quality must have one entry per output ({len(all_outputs)}), got {len(quality)}"
            )
        self.__attrs_init__(
            source=source,
            output=output,
            status=status,
            error=_plain_error(error),
            seconds=seconds,
            task_id=task_id,
            outputs=all_outputs,
            quality=tuple(
                None if q is None else MappingProxyType({str(k): v for k, v in q.items()}) for q in quality
            ),
            notes=tuple(notes),
            started=started,
            ended=ended,
            node=node,
            retries=retries,
            requeues=requeues,
            pieces=tuple(sorted(pieces, key=lambda p: (p.started, p.ended))),
        )

    @property
    def ok(self) -> bool:
        """True when the output is there: converted now, or skipped as already done."""
        return self.status in (Status.CONVERTED, Status.SKIPPED)

    @property
    def skipped(self) -> bool:
        return self.status is Status.SKIPPED

    @property
    def cancelled(self) -> bool:
        return self.status is Status.CANCELLED

    @classmethod
    def converted(cls, source: Path, output: Path, **kw: Any) -> FileResult:
        return cls(source=source, output=output, status=Status.CONVERTED, **kw)

    @classmethod
    def already_done(cls, source: Path, output: Path, **kw: Any) -> FileResult:
        return cls(source=source, output=output, status=Status.SKIPPED, **kw)

    @classmethod
    def failure(cls, source: Path, error: str, **kw: Any) -> FileResult:
        return cls(source=source, output=None, status=Status.FAILED, error=error, **kw)

    @classmethod
    def cancellation(cls, source: Path, error: str = "cancelled", **kw: Any) -> FileResult:
        """The run stopped before this file was done; ``error`` says at which point."""
        return cls(source=source, output=None, status=Status.CANCELLED, error=error, **kw)


def with_pieces(result: FileResult, pieces: Sequence[TaskSpan]) -> FileResult:
    """``result`` of a file encoded in segments with the tasks that ran for it: its
    ``started``/``ended`` then span them, its ``retries``/``requeues`` add theirs up (its
    ``node`` stays: the stitch's). No pieces: ``result`` as it is."""
    if not pieces:
        return result
    return attrs.evolve(
        result,
        pieces=pieces,
        started=min(p.started for p in pieces),
        ended=max(p.ended for p in pieces),
        retries=sum(p.retries for p in pieces),
        requeues=sum(p.requeues for p in pieces),
    )


@attrs.define(frozen=True, kw_only=True)
class ProgressEvent:
    """Sent to the progress callback: ``kind`` is ``"started"`` or ``"finished"``
    (``result`` set), ``done``/``total`` count finished files."""

    kind: Literal["started", "finished"]
    source: Path
    done: int
    total: int
    result: FileResult | None = None


@attrs.define(frozen=True)
class Report:
    """All results, in input order. Iterable, indexable, sized.

    ``succeeded`` (converted or skipped), ``failed`` and ``cancelled`` split the files by
    :class:`Status`; ``ok`` and :meth:`raise_for_failures` count a cancelled file as
    not done, like a failed one.
    """

    results: tuple[FileResult, ...] = attrs.field(converter=tuple[FileResult, ...])
    seconds: float = 0.0
    #: What the run used of its nodes (allocated time, busy slot time, utilisation,
    #: node-hours): see :class:`~batch_transcode.Usage`. ``None`` for a report made by hand.
    usage: Usage | None = None
    #: What :meth:`TranscodeSession.plan` estimated for these files, when the session
    #: planned them before converting them (the same inputs, outputs and presets).
    plan: Plan | None = None

    def __iter__(self) -> Iterator[FileResult]:
        return iter(self.results)

    def __len__(self) -> int:
        return len(self.results)

    @overload
    def __getitem__(self, index: int) -> FileResult: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[FileResult]: ...
    def __getitem__(self, index: int | slice) -> FileResult | Sequence[FileResult]:
        return self.results[index]

    @property
    def succeeded(self) -> list[FileResult]:
        """The files whose outputs are there: converted now, or skipped as already done."""
        return [r for r in self.results if r.ok]

    @property
    def failed(self) -> list[FileResult]:
        """The files with status ``"failed"`` (``counts()["failed"]`` of them); files the
        run stopped before are in :attr:`cancelled`."""
        return [r for r in self.results if r.status is Status.FAILED]

    @property
    def cancelled(self) -> list[FileResult]:
        """The files with status ``"cancelled"``: the run stopped before they were done."""
        return [r for r in self.results if r.cancelled]

    def _not_ok(self) -> list[FileResult]:
        """Every file whose output is not there: the failed ones, then the cancelled ones."""
        return [*self.failed, *self.cancelled]

    def counts(self) -> dict[str, int]:
        """How many files ended in each status, by :class:`Status` (every status present,
        zeros included); a status equals its word: ``counts()["failed"]``."""
        counts: dict[str, int] = dict.fromkeys(STATUSES, 0)
        for r in self.results:
            counts[r.status] += 1
        return counts

    @property
    def ok(self) -> bool:
        """True when every file's output is there (none failed or was cancelled)."""
        return all(r.ok for r in self.results)

    def raise_for_failures(self) -> Report:
        """Raise :class:`TranscodeFailedError` if any file failed or was cancelled (its
        ``failed`` holds those results, failures first); else return self."""
        not_ok = self._not_ok()
        if not_ok:
            raise TranscodeFailedError(not_ok)
        return self

    def summary(self) -> str:
        """One line of counts, then one line per file that did not convert (failures
        first, then cancelled files), sources relative to their common folder; with
        :attr:`usage`, a line of node-hours and utilisation (and the plan's node-hours and
        cost, with :attr:`plan`); when the run measured quality, a last line with each
        metric's mean over the outputs measured (each output's own mean, averaged) and
        the lowest output."""
        counts = self.counts()
        line = f"{len(self.succeeded)}/{len(self)} converted in {_took(self.seconds)}"
        if counts["skipped"]:
            line += f" ({counts['skipped']} already done, skipped)"
        if counts["failed"]:
            line += f", {counts['failed']} failed"
        if counts["cancelled"]:
            line += f", {counts['cancelled']} cancelled"
        not_ok = self._not_ok()
        if not_ok:
            line += ":"
            base = self._base()
            for r in not_ok:
                first = (r.error or r.status).splitlines()[0]
                line += f"\n  {_relative(r.source, base)}: {first}"
        if self.usage is not None:
            line += f"\n{self.usage.summary()}"
            if self.plan is not None:
                line += f" (plan: {self.plan.node_hours:.4f} node-hours"
                cost = self.plan.estimated_cost
                if cost is not None and self.plan.price_per_node_hour is not None:
                    actual = self.usage.cost(self.plan.price_per_node_hour)
                    line += f"; cost {actual:.2f}, planned {cost:.2f}"
                line += ")"
        quality = self._quality_line()
        if quality:
            line += f"\n{quality}"
        return line

    def _quality_line(self) -> str | None:
        """``quality of 3 outputs: VMAF 93.41 (lowest 88.02: a.mp4), ...; 1 output not
        measured`` (a video output whose measurement failed: its note says why), or None
        when the run measured no quality."""
        means: dict[str, list[tuple[float, Path]]] = {}
        measured: set[Path] = set()
        unmeasured = 0
        for r in self.results:
            if not r.quality:
                continue
            # a measurement that failed left a note (audio and thumbnails are not measured)
            unmeasured += sum(note.startswith("quality not measured") for note in r.notes)
            for output, scores in zip(r.outputs, r.quality, strict=True):
                if scores is None:
                    continue
                measured.add(output)
                for name, score in scores.items():
                    means.setdefault(name, []).append((score.mean, output))
        if not means and not unmeasured:
            return None
        out_base = _common_folder(sorted(measured))
        parts = []
        for name in sorted(means, key=_metric_order):
            values = means[name]
            part = f"{_LABELS.get(name, name)} {_shown(name, sum(v for v, _ in values) / len(values))}"
            if len(values) > 1:
                low, where = min(values, key=lambda v: v[0])
                part += f" (lowest {_shown(name, low)}: {_relative(where, out_base)})"
            parts.append(part)
        line = f"quality of {_outputs(len(measured))}: {', '.join(parts)}" if parts else "quality"
        if unmeasured:
            line += f"{'; ' if parts else ': '}{_outputs(unmeasured)} not measured"
        return line

    def __str__(self) -> str:
        return self.summary()

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data (``batch-transcode convert --json`` writes it)::

            {"summary": {"total", "converted", "skipped", "failed", "cancelled", "seconds"},
             "files": [{"source", "output", "outputs", "status", "error", "seconds",
                        "task_id", "quality", "notes", "started", "ended", "node",
                        "retries", "requeues", "pieces"}, ...],
             "usage": {...} or null}

        Paths are absolute strings; ``output`` is ``null`` unless the output is there,
        ``outputs`` lists every output (several with a list of presets; empty unless ok),
        ``error`` is ``null`` unless the file failed or was cancelled; ``seconds``
        (the file's conversion time) and ``task_id`` (its Azure Batch task) are
        ``null`` where unknown. ``quality`` is empty unless the run measured quality;
        then it has one entry per output, in the order of ``outputs``: ``null`` for an
        output not measured, else ``{"vmaf": {"mean", "min", "p5", "frames"}, "psnr":
        {...}, "ssim": {...}}`` with a key for each metric measured (``p5``: the 5th
        percentile of the frames' scores; ``frames``: how many were compared). ``notes``
        lists remarks that do not change the status. ``started`` and ``ended`` (ISO 8601,
        UTC) and ``node`` say when and where the file's task ran, ``retries`` and
        ``requeues`` how often the service ran it again (``null``/0 where it never ran).
        ``pieces`` lists, for a file encoded in segments, each task that ran for it
        (:class:`TaskSpan`): ``{"kind": "segment"|"audio"|"stitch", "index", "status",
        "started", "ended", "node", "task_id", "retries", "requeues"}``; empty for a file
        encoded whole. Files are in input order. ``usage`` is :attr:`usage` as data (``null`` when
        unknown): ``{"backend", "nodes": [{"node_id", "allocated", "removed"}],
        "slots_per_node", "allocated_node_seconds", "busy_slot_seconds", "utilisation",
        "node_hours", "tasks"}``.
        """
        return {
            "summary": {
                "total": len(self),
                **{str(status): n for status, n in self.counts().items()},
                "seconds": round(self.seconds, 3),
            },
            "files": [
                {
                    "source": str(r.source),
                    "output": None if r.output is None else str(r.output),
                    "outputs": [str(o) for o in r.outputs],
                    "status": r.status.value,
                    "error": r.error,
                    "seconds": None if r.seconds is None else round(r.seconds, 3),
                    "task_id": r.task_id,
                    "quality": [None if q is None else _quality_dict(q) for q in r.quality],
                    "notes": list(r.notes),
                    "started": _iso(r.started),
                    "ended": _iso(r.ended),
                    "node": r.node,
                    "retries": r.retries,
                    "requeues": r.requeues,
                    "pieces": [p.to_dict() for p in r.pieces],
                }
                for r in self.results
            ],
            "usage": None if self.usage is None else _usage_dict(self.usage, self.plan),
        }

    def _base(self) -> Path | None:
        return _common_folder([r.source for r in self.results])

    def _repr_html_(self) -> str:
        """The report page's body for notebooks (see :meth:`to_html`)."""
        return _page.fragment(**_page_parts(self, self.plan))

    def to_html(self, *, title: str = "batch-transcode report", plan: Plan | None = None) -> str:
        """The report as one self-contained HTML page (inline CSS and SVG; no script, nothing
        fetched): the counts; with :attr:`usage`, the nodes' allocated time, node-hours,
        busy slot time and utilisation, beside ``plan`` (what :meth:`TranscodeSession.plan`
        said for the same files; by default :attr:`plan`); a timeline with one lane per
        node slot (or local worker) and one bar per task, coloured by outcome, over each
        node's allocated span (a file encoded in segments has a hatched bar per segment,
        its audio and its stitch, labelled ``seg 3``, ``audio``, ``stitch``); then one row
        per file (files that did not convert first) with its outputs and their sizes,
        seconds, quality where measured, and its error, wrapped."""
        return _page.document(title, _page.fragment(**_page_parts(self, plan or self.plan)))

    def save_html(
        self, path: str | os.PathLike[str], *, title: str = "batch-transcode report", plan: Plan | None = None
    ) -> Path:
        """Write :meth:`to_html` to ``path`` (UTF-8); the path written."""
        target = Path(path)
        target.write_text(self.to_html(title=title, plan=plan), encoding="utf-8")
        return target


def _row(r: FileResult, src_base: Path | None, out_base: Path | None) -> _page.Row:
    return _page.Row(
        status=r.status.value,
        source=(_relative(r.source, src_base), str(r.source)),
        outputs=tuple((_relative(o, out_base), str(o), _output_size(o)) for o in r.outputs),
        seconds="" if r.seconds is None else seconds(r.seconds),
        quality=tuple(_quality_cell(q) for q in r.quality),
        quality_detail=_quality_detail(r),
        error="\n".join(t for t in (r.error, *r.notes) if t),
    )


def _usage_rows(usage: Usage, plan: Plan | None, wall: float) -> list[tuple[str, str, str]]:
    """(figure, this run, the plan) rows; the plan's column is empty without a plan."""
    rows = [
        ("nodes", f"{len(usage.nodes)}", "" if plan is None else f"{plan.nodes}"),
        ("slots per node", f"{usage.slots_per_node}", "" if plan is None else f"{plan.slots_per_node}"),
        ("allocated node-seconds", seconds(usage.allocated_node_seconds), ""),
        ("busy slot-seconds", seconds(usage.busy_slot_seconds), ""),
        ("utilisation", f"{usage.utilisation:.0%}", ""),
        ("node-hours", f"{usage.node_hours:.4f}", "" if plan is None else f"{plan.node_hours:.4f}"),
    ]
    if plan is not None:
        rows.insert(4, ("wall time (s)", seconds(wall), f"{plan.estimated_seconds:.0f}"))
        price, cost = plan.price_per_node_hour, plan.estimated_cost
        if price is not None and cost is not None:
            rows.append((f"cost at {price} per node-hour", f"{usage.cost(price):.2f}", f"{cost:.2f}"))
    return rows


@attrs.frozen
class _Ran:
    """One task on the timeline: a file's, or one piece of a file encoded in segments."""

    node: str
    started: dt.datetime
    ended: dt.datetime
    status: str
    label: str
    retries: int = 0
    requeues: int = 0
    #: ``seg 3``, ``audio``, ``stitch`` for a piece; empty for a file's task.
    piece: str = ""


def _ran(results: Sequence[FileResult]) -> list[_Ran]:
    """Every task that ran: each file's, or for a file encoded in segments each of its pieces."""
    out: list[_Ran] = []
    for r in results:
        for p in r.pieces:
            where = f" ({p.task_id})" if p.task_id else ""
            out.append(
                _Ran(p.node or "", p.started, p.ended, p.status.value, f"{r.source.name} {p.label}{where}",
                     p.retries, p.requeues, p.label)
            )  # fmt: skip
        if not r.pieces and r.started is not None and r.ended is not None:
            where = f" ({r.task_id})" if r.task_id else ""
            out.append(_Ran(r.node or "", r.started, r.ended, r.status.value, r.source.name + where,
                            r.retries, r.requeues))  # fmt: skip
    return out


def _lanes(
    slots: dict[str, int], usage: Usage | None, t0: dt.datetime, end: dt.datetime, local: bool
) -> tuple[list[_page.Lane], dict[tuple[str, int], int]]:
    """A lane per node slot (or local worker), each node's allocated span behind its lanes;
    and each (node, slot)'s lane index. ``slots``: the slots each node's tasks took."""
    allocated: dict[str, tuple[tuple[float, float], ...]] = {}
    for span in usage.nodes if usage else ():
        key = "" if local else span.node_id
        slots[key] = max(slots.get(key, 0), usage.slots_per_node if usage else 1)
        stop = span.removed if span.removed is not None else end
        allocated[key] = (((span.allocated - t0).total_seconds(), (min(stop, end) - t0).total_seconds()),)
    index: dict[tuple[str, int], int] = {}
    out: list[_page.Lane] = []
    for node in sorted(slots):
        for slot in range(slots[node]):
            index[(node, slot)] = len(out)
            label = f"worker {slot + 1}" if local else f"{node} / slot {slot + 1}"
            out.append(_page.Lane(label=label, allocated=allocated.get(node, ())))
    return out, index


def _timeline(report: Report) -> tuple[list[_page.Lane], list[_page.Bar], float]:
    """Lanes (each node's slots, or the local workers) and one bar per task that ran."""
    usage = report.usage
    ran = _ran(report.results)
    if not ran:
        return [], [], 0.0
    local = usage.backend == "local" if usage is not None else all(not t.node for t in ran)
    t0 = min([t.started for t in ran] + ([usage.started] if usage and usage.started else []))
    end = max([t.ended for t in ran] + ([usage.ended] if usage else []))
    placed = lanes([(t.node, t.started, t.ended) for t in ran], usage.slots_per_node if usage else None)
    slots = {t.node: 0 for t in ran}
    for node, slot in placed:
        slots[node] = max(slots[node], slot + 1)
    out_lanes, index = _lanes(slots, usage, t0, end, local)
    bars = [
        _page.Bar(
            lane=index[where],
            start=(t.started - t0).total_seconds(),
            end=(t.ended - t0).total_seconds(),
            status=t.status,
            label=t.label,
            retries=t.retries,
            requeues=t.requeues,
            piece=t.piece,
        )
        for t, where in zip(ran, placed, strict=True)
    ]
    return out_lanes, bars, (end - t0).total_seconds()


def _page_parts(report: Report, plan: Plan | None) -> dict[str, Any]:
    """What :func:`_page.fragment` draws, for ``report``."""
    rows = sorted(report.results, key=lambda r: ("failed", "cancelled").index(r.status) if not r.ok else 2)
    src_base = report._base()
    out_base = _common_folder([o for r in report.results for o in r.outputs])
    lanes_, bars, span = _timeline(report)
    return {
        "headline": report.summary().splitlines()[0].rstrip(":"),
        "folders": [(w, str(b)) for w, b in (("sources", src_base), ("outputs", out_base)) if b is not None],
        "rows": [_row(r, src_base, out_base) for r in rows],
        "usage": _usage_rows(report.usage, plan, report.seconds) if report.usage is not None else (),
        "lanes": lanes_,
        "bars": bars,
        "span": span,
    }


#: How each metric is named, ordered and rounded in reports (others: as they come, 3 digits).
_LABELS = {"vmaf": "VMAF", "psnr": "PSNR", "ssim": "SSIM"}
_DIGITS = {"vmaf": 3, "psnr": 3, "ssim": 6}
_SHOWN_DIGITS = {"vmaf": 2, "psnr": 2, "ssim": 4}
_UNITS = {"psnr": " dB"}


def _metric_order(name: str) -> tuple[int, str]:
    order = list(_LABELS)
    return (order.index(name) if name in order else len(order), name)


def _shown(name: str, value: float) -> str:
    return f"{value:.{_SHOWN_DIGITS.get(name, 2)}f}{_UNITS.get(name, '')}"


def _outputs(n: int) -> str:
    return f"{n} output" if n == 1 else f"{n} outputs"


def _quality_dict(scores: Mapping[str, Score]) -> dict[str, dict[str, float | int]]:
    return {
        name: {
            "mean": round(score.mean, _DIGITS.get(name, 3)),
            "min": round(score.min, _DIGITS.get(name, 3)),
            "p5": round(score.p5, _DIGITS.get(name, 3)),
            "frames": score.frames,
        }
        for name, score in sorted(scores.items(), key=lambda item: _metric_order(item[0]))
    }


def _quality_cell(scores: Mapping[str, Score] | None) -> str:
    """``VMAF 93.41 · PSNR 41.20 dB`` for one output; ``not measured`` for None."""
    if scores is None:
        return "not measured"
    return " · ".join(
        f"{_LABELS.get(name, name)} {_shown(name, scores[name].mean)}"
        for name in sorted(scores, key=_metric_order)
    )


def _quality_detail(result: FileResult) -> str:
    """One line per output measured, each metric with its mean, min, 5th percentile, frames."""
    lines = []
    for output, scores in zip(result.outputs, result.quality, strict=False):  # quality may be empty
        if scores is None:
            continue
        figures = "; ".join(
            f"{_LABELS.get(name, name)} mean {_shown(name, s.mean)}, min {_shown(name, s.min)}, "
            f"5th percentile {_shown(name, s.p5)} over {s.frames} frames"
            for name, s in sorted(scores.items(), key=lambda item: _metric_order(item[0]))
        )
        lines.append(f"{output.name}: {figures}")
    return "\n".join(lines)


def _usage_dict(usage: Usage, plan: Plan | None) -> dict[str, Any]:
    """``usage`` as data; with the plan's figures under ``"plan"`` and the cost at its price."""
    if plan is None:
        return usage.to_dict()
    data = usage.to_dict(plan.price_per_node_hour)
    data["plan"] = {
        "nodes": plan.nodes,
        "slots_per_node": plan.slots_per_node,
        "estimated_seconds": round(plan.estimated_seconds, 3),
        "node_hours": round(plan.node_hours, 6),
        "price_per_node_hour": plan.price_per_node_hour,
        "estimated_cost": plan.estimated_cost,
    }
    return data


def _iso(value: dt.datetime | None) -> str | None:
    return None if value is None else value.astimezone(dt.UTC).isoformat(timespec="milliseconds")


def _took(seconds: float) -> str:
    return f"{seconds:.2f}s" if seconds < 10 else f"{seconds:.1f}s"


def _common_folder(paths: Sequence[Path]) -> Path | None:
    """The deepest folder holding all ``paths`` (None for none, or no common folder)."""
    if not paths:
        return None
    try:
        common = Path(os.path.commonpath([str(p.parent) for p in paths]))
    except ValueError:  # relative and absolute paths mixed, or different drives
        return None
    return common if common.parts else None


def _relative(path: Path, base: Path | None) -> str:
    if base is None:
        return str(path)
    try:
        return path.relative_to(base).as_posix()
    except ValueError:
        return str(path)


def _output_size(path: Path | None) -> str:
    if path is None:
        return ""
    try:
        size = float(path.stat().st_size)
    except OSError:
        return ""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")
