"""An input encoded in segments on the local backend's worker pool (see
:mod:`batch_transcode._split`): the same plan as on Azure, so results match.

Each segment's encode and the audio-once encode is one unit of work on the pool, holding
a worker slot while its ffmpeg runs; the run queues the units of every split input
longest first, before the inputs encoded whole. The unit that ends last stitches each
rendition (in a slot), checks it, and measures its quality when asked: the file's
result. The pieces live in a hidden folder beside the outputs, removed when the file
ends; a stitched output takes its final name only once every rendition passed its check.
Each unit that ran, and the stitch, is measured from taking its slot to letting it go:
the result's ``pieces``.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Protocol

from batch_transcode._commands import audio_once_argv, audio_preset, concat_list, segment_argv, stitch_argv
from batch_transcode._errors import StitchCheckError
from batch_transcode._ffmpeg import describe_ffmpeg_failure, temporary_output
from batch_transcode._naming import WorkItem
from batch_transcode._presets import Preset
from batch_transcode._progress import ProgressSink
from batch_transcode._report import FileResult, PieceKind, Status, TaskSpan, with_pieces
from batch_transcode._segments import Segment
from batch_transcode._split import (
    SplitPlan,
    audio_file,
    check_stitched,
    concat_file,
    segment_file,
    split_note,
)

__all__ = ["SplitFile", "SplitRunner", "queue_units"]

log = logging.getLogger(__name__)


class SplitRunner(Protocol):
    """What a split file needs of the local run it belongs to."""

    @property
    def ffmpeg_exe(self) -> str: ...
    @property
    def presets(self) -> tuple[Preset, ...]: ...
    @property
    def progress(self) -> ProgressSink: ...
    @property
    def cancel(self) -> threading.Event: ...
    @property
    def slots(self) -> threading.BoundedSemaphore: ...
    @property
    def measures_quality(self) -> bool: ...

    def run_ffmpeg(self, argv: list[str]) -> tuple[int | None, str]: ...

    def measured(self, item: WorkItem, result: FileResult) -> FileResult: ...


class SplitFile:
    """One input encoded in segments; :attr:`future` holds its result once it ended."""

    def __init__(self, runner: SplitRunner, item: WorkItem, plan: SplitPlan) -> None:
        self.runner = runner
        self.item = item
        self.plan = plan
        self.future: Future[FileResult] = Future()
        item.outputs[0].parent.mkdir(parents=True, exist_ok=True)
        self.workdir = Path(tempfile.mkdtemp(prefix=".bt-split-", dir=item.outputs[0].parent))
        self._lock = threading.Lock()
        self._left = len(plan.segments) + plan.has_audio
        self._error: str | None = None
        self._started: float | None = None
        self._ended = False
        #: The units that ran (and the stitch), as they ended.
        self._pieces: list[TaskSpan] = []

    def units(self) -> list[tuple[float, Callable[[], None]]]:
        """The file's units of work with their cost (media seconds): one per segment, and
        the audio-once encode (cheap, but the stitch waits for it: costed as the longest)."""
        units: list[tuple[float, Callable[[], None]]] = [
            (s.duration, functools.partial(self._segment, s)) for s in self.plan.schedule()
        ]
        if self.plan.has_audio:
            units.insert(0, (units[0][0], self._audio))
        return units

    def _path(self, name: str) -> str:
        return str(self.workdir / name)

    def _segment(self, segment: Segment) -> None:
        outputs = [
            (self._path(segment_file(segment.index, n, p)), p) for n, p in enumerate(self.runner.presets)
        ]
        argv = segment_argv(self.runner.ffmpeg_exe, str(self.item.source), outputs, segment)
        what = f"segment {segment.index + 1} of {len(self.plan.segments)}"
        self._unit(argv, what, PieceKind.SEGMENT, segment.index)

    def _audio(self) -> None:
        outputs = self._audio_outputs()
        argv = audio_once_argv(
            self.runner.ffmpeg_exe, str(self.item.source), [(o, p) for o, p in outputs if o]
        )
        self._unit(argv, "the audio", PieceKind.AUDIO)

    def _audio_outputs(self) -> list[tuple[str, Preset]]:
        """The audio-once encode's output per rendition (``""`` where a preset has no audio)."""
        outputs: list[tuple[str, Preset]] = []
        for n, preset in enumerate(self.runner.presets):
            audio = audio_preset(preset)
            outputs.append(("", preset) if audio is None else (self._path(audio_file(n, preset)), audio))
        return outputs

    def _unit(self, argv: list[str], what: str, kind: PieceKind, index: int | None = None) -> None:
        """Run one piece's ffmpeg in a worker slot (not once the file failed or the run
        was cancelled), measured; the last piece to end finishes the file."""
        try:
            with self.runner.slots:
                if self.runner.cancel.is_set() or self._error is not None:
                    return
                self._start()
                began = dt.datetime.now(dt.UTC)
                try:
                    code, stderr = self.runner.run_ffmpeg(argv)
                except OSError as exc:
                    code, stderr = 1, f"could not start ffmpeg: {exc}"
                status = Status.CONVERTED if code == 0 else Status.FAILED
                if self.runner.cancel.is_set():
                    status = Status.CANCELLED
                elif code != 0:
                    why = describe_ffmpeg_failure(code, stderr, self.runner.presets)
                    with self._lock:
                        self._error = self._error or f"{why}\n(encoding {what} of the split file)"
                self._ran(kind, status, began, index)
        finally:
            with self._lock:
                self._left -= 1
                last = self._left == 0
            if last:
                self._finish()

    def _ran(self, kind: PieceKind, status: Status, began: dt.datetime, index: int | None = None) -> None:
        """A piece held its slot from ``began`` to now."""
        piece = TaskSpan(kind=kind, status=status, started=began, ended=dt.datetime.now(dt.UTC), index=index)
        with self._lock:
            self._pieces.append(piece)

    def _start(self) -> None:
        with self._lock:
            first, self._started = self._started is None, self._started or time.monotonic()
        if first:
            self.runner.progress.started(self.item.source)

    def _seconds(self) -> float | None:
        return None if self._started is None else time.monotonic() - self._started

    def _finish(self) -> None:
        try:
            result = self._result()
        except Exception as exc:  # a bug or OS error in one file never sinks the batch
            log.exception("stitching %s failed unexpectedly", self.item.source)
            result = FileResult.failure(self.item.source, f"internal error: {exc!r}", seconds=self._seconds())
        finally:
            self.abandon()
        with self._lock:
            pieces = list(self._pieces)
        self.future.set_result(with_pieces(result, pieces))

    def abandon(self) -> None:
        """Remove the pieces (the file ended, or its run stopped before it did)."""
        with self._lock:
            ended, self._ended = self._ended, True
        if not ended:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def _result(self) -> FileResult:
        source = self.item.source
        if self.runner.cancel.is_set():
            return FileResult.cancellation(source, seconds=self._seconds())
        if self._error is not None:
            return FileResult.failure(source, self._error, seconds=self._seconds())
        with self.runner.slots:
            began = dt.datetime.now(dt.UTC)
            result = self._stitched()
            self._ran(PieceKind.STITCH, result.status, began)
            return result

    def _stitched(self) -> FileResult:
        """Stitch, check (and measure, when asked) in the slot the caller holds."""
        source = self.item.source
        error = self._stitch()
        if self.runner.cancel.is_set():
            return FileResult.cancellation(source, seconds=self._seconds())
        if error is not None:
            return FileResult.failure(source, error, seconds=self._seconds())
        result = FileResult.converted(
            source,
            self.item.outputs[0],
            outputs=self.item.outputs,
            seconds=self._seconds(),
            notes=[split_note(self.plan)],
        )
        if self.runner.measures_quality and result.status is Status.CONVERTED:
            return self.runner.measured(self.item, result)
        return result

    def _stitch(self) -> str | None:
        """Stitch and check every rendition; once all passed, they take their final names
        (an error: nothing is delivered)."""
        audio = self._audio_outputs()
        tmps = [temporary_output(output) for output in self.item.outputs]
        try:
            for n, (preset, tmp) in enumerate(zip(self.runner.presets, tmps, strict=True)):
                error = self._stitch_one(n, preset, tmp, audio[n][0] or None)
                if error is not None:
                    return error
            for tmp, output in zip(tmps, self.item.outputs, strict=True):
                os.replace(tmp, output)
            return None
        finally:
            for tmp in tmps:
                tmp.unlink(missing_ok=True)

    def _stitch_one(self, rendition: int, preset: Preset, target: Path, audio: str | None) -> str | None:
        pieces = [(segment_file(s.index, rendition, preset), s.duration) for s in self.plan.segments]
        listing = self.workdir / concat_file(rendition)
        listing.write_text(concat_list(pieces), encoding="utf-8")
        audio = audio if self.plan.has_audio else None
        code, stderr = self.runner.run_ffmpeg(
            stitch_argv(self.runner.ffmpeg_exe, str(listing), audio, str(target), preset)
        )
        if code != 0:
            return f"{describe_ffmpeg_failure(code, stderr, [preset])}\n(stitching the segments)"
        try:
            check_stitched(self.plan, target, Path(audio) if audio else None)
        except StitchCheckError as exc:
            return f"{preset.name}: {exc}"
        return None


def queue_units(files: Sequence[SplitFile]) -> list[Callable[[], None]]:
    """Every unit of ``files``, longest first (among equals, in the files' order)."""
    units = [(cost, n, k, fn) for n, f in enumerate(files) for k, (cost, fn) in enumerate(f.units())]
    return [fn for _, _, _, fn in sorted(units, key=lambda u: (-u[0], u[1], u[2]))]
