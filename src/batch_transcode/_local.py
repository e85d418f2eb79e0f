"""The local backend: a bounded pool of ffmpeg processes on this machine.

Each file runs in one worker slot from start to end: its header is read (when a preset
needs its duration or size), one ffmpeg run writes every output, and when the run asks
for quality each video output is then measured against the source
(:func:`~batch_transcode._quality.measure`) before the slot is freed, so ``workers``
bounds the measurements' CPU too.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import subprocess
import threading
import time
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path

import attrs

from batch_transcode._backend import RunRequest
from batch_transcode._commands import ffmpeg_argv, size_note
from batch_transcode._config import LocalConfig
from batch_transcode._errors import QualityError
from batch_transcode._ffmpeg import (
    DURATION_UNKNOWN_LINE,
    EMPTY_OUTPUT_LINE,
    LOCAL_HINT,
    InputInfo,
    check_build,
    describe_ffmpeg_failure,
    ffmpeg_build,
    find_ffmpeg,
    probe_input,
    temporary_output,
)
from batch_transcode._local_split import SplitFile, queue_units
from batch_transcode._naming import WorkItem
from batch_transcode._process import kill_process_group
from batch_transcode._quality import OutputQuality, filters_needed, measure, version_needed
from batch_transcode._report import FileResult, Status
from batch_transcode._split import plan_split
from batch_transcode._teardown import Teardown
from batch_transcode._usage import Capacity, NodeSpan

__all__ = ["QUALITY_HINT", "LocalBackend", "quality_note"]

log = logging.getLogger(__name__)

#: How long asking ffmpeg for its encoders and filters may take at most.
BUILD_CHECK_TIMEOUT = 30.0


def _ffmpeg_env() -> dict[str, str]:
    """ffmpeg's environment: ours, with SVT-AV1's own log held to errors (it prints a
    banner and its settings to stderr whatever ffmpeg's ``-loglevel``) unless set."""
    return {**os.environ, "SVT_LOG": os.environ.get("SVT_LOG", "1")}


#: What to do about a missing encoder or filter when the run also measures quality.
QUALITY_HINT = (
    "pass LocalConfig(ffmpeg=...) an ffmpeg built with it; the bundled one has every encoder "
    "and filter of the named presets, and libvmaf, psnr and ssim: pip install "
    "'batch-transcode[local]', then LocalConfig(ffmpeg=imageio_ffmpeg.get_ffmpeg_exe()); a "
    "quality metric can also be left out of quality="
)


def quality_note(output: Path, error: QualityError) -> str:
    """The note a result carries for an output whose measurement failed."""
    why = str(error).removeprefix("quality not measured: ")
    return f"quality not measured for {output.name}: {why}"


def _written(path: Path) -> bool:
    """ffmpeg can exit 0 having written nothing to an output (a thumbnail past the end)."""
    try:
        return path.stat().st_size > 0
    except OSError:
        return False


class LocalBackend:
    """Runs up to ``config.workers`` ffmpeg processes at once, argv only (no shell).

    Several runs (jobs) may share the backend; together they never exceed
    ``workers`` processes.
    """

    name = "local"

    def __init__(self, config: LocalConfig) -> None:
        self.config = config
        self.ffmpeg = ""
        self._slots = threading.BoundedSemaphore(config.workers)

    def open(self, teardown: Teardown) -> None:
        self.ffmpeg = find_ffmpeg(self.config.ffmpeg)
        log.info("local backend ready: %d workers, ffmpeg %s", self.config.workers, self.ffmpeg)

    def run(self, request: RunRequest) -> None:
        """Convert ``request.items``, at most ``workers`` at a time over all runs, reporting
        each result (files cancelled before they ran too) through ``request.progress``.

        Raises :class:`ConfigError` before any file runs if this ffmpeg lacks an encoder
        or filter of the presets, or the filter of a quality metric asked for (asked once
        per ffmpeg executable)."""
        timeout = min(BUILD_CHECK_TIMEOUT, self.config.timeout or BUILD_CHECK_TIMEOUT)
        check_build(
            ffmpeg_build(self.ffmpeg, timeout=timeout),
            request.presets,
            where=f"on this machine ({self.ffmpeg})",
            hint=QUALITY_HINT if request.quality else LOCAL_HINT,
            extra=filters_needed(request.quality),
            min_version=version_needed(request.quality),
        )
        _LocalRun(self, request).run()


class _LocalRun:
    """One request on the local backend; its ``cancel`` event stops it at once.

    With ``segment_seconds``, each long video input is a :class:`SplitFile`: its segments
    run as units of their own on the same pool (:mod:`batch_transcode._local_split`)."""

    def __init__(self, backend: LocalBackend, request: RunRequest) -> None:
        self.backend = backend
        self.items = request.items
        self.presets = request.presets
        self.quality = request.quality
        self.progress = request.progress
        self.cancel = request.cancel
        self.segment_seconds = request.segment_seconds
        self._procs: set[subprocess.Popen[bytes]] = set()
        self._lock = threading.Lock()

    # -- what a split file uses (SplitRunner) ------------------------------------------------

    @property
    def ffmpeg_exe(self) -> str:
        return self.backend.ffmpeg

    @property
    def slots(self) -> threading.BoundedSemaphore:
        return self.backend._slots

    @property
    def measures_quality(self) -> bool:
        return bool(self.quality)

    def run_ffmpeg(self, argv: list[str]) -> tuple[int | None, str]:
        return self._ffmpeg(argv)

    def measured(self, item: WorkItem, result: FileResult) -> FileResult:
        return self._measured(item, result)

    def _split_files(self) -> dict[int, SplitFile]:
        """The items encoded in segments, by position (each input's keyframes read here)."""
        if self.segment_seconds is None:
            return {}
        files: dict[int, SplitFile] = {}
        for pos, item in enumerate(self.items):
            if self.cancel.is_set():
                break
            plan = plan_split(item.source, self.presets, self.segment_seconds)
            if plan is None:
                continue
            try:
                files[pos] = SplitFile(self, item, plan)
            except OSError as exc:  # no room for the pieces: encoded whole, its error its own
                log.warning("%s: not split: %s", item.source, exc)
        return files

    def _convert_one(self, item: WorkItem) -> FileResult:
        """One file in a worker slot; its result carries when the slot held it."""
        with self.backend._slots:
            if self.cancel.is_set():
                return FileResult.cancellation(item.source, "cancelled before it started")
            started = dt.datetime.now(dt.UTC)
            result = self._convert_one_in_slot(item)
            return attrs.evolve(result, started=started, ended=dt.datetime.now(dt.UTC))

    def _convert_one_in_slot(self, item: WorkItem) -> FileResult:
        self.progress.started(item.source)
        started = time.monotonic()
        placed = any(p.seek_fraction is not None for p in self.presets)
        capped = any(p.max_width is not None or p.max_height is not None for p in self.presets)
        header = probe_input(self.backend.ffmpeg, str(item.source)) if placed or capped else InputInfo()
        if placed and header.duration is None:
            why = describe_ffmpeg_failure(1, DURATION_UNKNOWN_LINE, self.presets)
            return FileResult.failure(item.source, why, seconds=time.monotonic() - started)
        notes = self._size_notes(header)
        for note in notes:
            log.info("%s: %s", item.source, note)
        item.outputs[0].parent.mkdir(parents=True, exist_ok=True)
        tmps = [temporary_output(output) for output in item.outputs]
        argv = ffmpeg_argv(
            self.backend.ffmpeg,
            str(item.source),
            [(str(tmp), preset) for tmp, preset in zip(tmps, self.presets, strict=True)],
            duration=header.duration,
        )
        try:
            try:
                code, stderr = self._ffmpeg(argv)
            except OSError as exc:
                return FileResult.failure(item.source, f"could not start ffmpeg: {exc}")
            result = self._result(item, tmps, code, stderr, seconds=time.monotonic() - started, notes=notes)
        finally:
            for tmp in tmps:
                tmp.unlink(missing_ok=True)
        if self.quality and result.status is Status.CONVERTED:
            return self._measured(item, result)
        return result

    def _measured(self, item: WorkItem, result: FileResult) -> FileResult:
        """``result`` with the scores of each video output against its source, measured
        one output after another in this worker slot; audio outputs and thumbnails get
        ``None``. A measurement that fails (or is cancelled) is a note: the file stays
        converted."""
        quality: list[OutputQuality | None] = []
        notes = list(result.notes)
        started = time.monotonic()
        for output, preset in zip(item.outputs, self.presets, strict=True):
            if not preset.is_video:
                quality.append(None)
                continue
            try:
                scores = measure(
                    self.backend.ffmpeg,
                    item.source,
                    output,
                    self.quality,
                    timeout=self.backend.config.timeout,
                    cancel=self.cancel,
                )
            except QualityError as exc:
                quality.append(None)
                notes.append(quality_note(output, exc))
                log.warning("%s: %s", item.source, notes[-1].splitlines()[0])
                continue
            quality.append(scores)
        log.debug("%s: quality measured in %.2f s", item.source, time.monotonic() - started)
        return FileResult.converted(
            item.source,
            item.outputs[0],
            outputs=item.outputs,
            seconds=result.seconds,
            quality=quality,
            notes=notes,
        )

    def _size_notes(self, header: InputInfo) -> list[str]:
        """A note per video output that keeps its source's size, smaller than its preset's
        cap (it is not upscaled)."""
        if header.video_size is None:
            return []
        notes = (size_note(p, *header.video_size) for p in self.presets)
        return [n for n in notes if n is not None]

    def _ffmpeg(self, argv: list[str]) -> tuple[int | None, str]:
        """Run ffmpeg to its end, its timeout or a cancel (:meth:`stop_all` kills it):
        its exit code (``None``: stopped at the timeout) and its stderr."""
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=_ffmpeg_env(),
            start_new_session=True,  # Ctrl-C reaches us, and we stop the children ourselves
        )
        with self._lock:
            self._procs.add(proc)
            if self.cancel.is_set():  # raced with stop_all: stop it too
                kill_process_group(proc)
        try:
            try:
                _, err = proc.communicate(timeout=self.backend.config.timeout)
                code: int | None = proc.returncode
            except subprocess.TimeoutExpired:
                kill_process_group(proc)
                _, err = proc.communicate()
                code = None
        finally:
            with self._lock:
                self._procs.discard(proc)
        return code, err.decode("utf-8", "replace")

    def _result(
        self,
        item: WorkItem,
        tmps: list[Path],
        code: int | None,
        stderr: str,
        *,
        seconds: float,
        notes: Sequence[str] = (),
    ) -> FileResult:
        """What one ffmpeg run came to; complete outputs take their final names (a
        converted result carries ``notes``)."""
        if self.cancel.is_set():
            return FileResult.cancellation(item.source, seconds=seconds)
        if code == 0:
            empty = [n for n, tmp in enumerate(tmps) if not _written(tmp)]
            if not empty:
                for tmp, output in zip(tmps, item.outputs, strict=True):
                    os.replace(tmp, output)
                return FileResult.converted(
                    item.source, item.outputs[0], outputs=item.outputs, seconds=seconds, notes=notes
                )
            stderr += "".join(
                "\n" + EMPTY_OUTPUT_LINE.format(index=n, extension=self.presets[n].extension) for n in empty
            )
        return FileResult.failure(
            item.source, describe_ffmpeg_failure(code, stderr, self.presets), seconds=seconds
        )

    def stop_all(self) -> None:
        with self._lock:
            self.cancel.set()
            procs = list(self._procs)
        for proc in procs:
            kill_process_group(proc)

    def _outcome(self, fut: Future[FileResult], item: WorkItem) -> FileResult:
        try:
            return fut.result()
        except OSError as exc:  # the file system refused (read-only, full, removed meanwhile)
            where = f" ({exc.filename})" if exc.filename else ""
            log.warning("converting %s failed: %s%s", item.source, exc.strerror or exc, where)
            return FileResult.failure(
                item.source,
                f"could not write the output ({exc.strerror or exc}); check that the output "
                "folder can be written and has space, then run again",
            )
        except Exception as exc:  # a bug in one file never sinks the batch
            log.exception("converting %s failed unexpectedly", item.source)
            return FileResult.failure(item.source, f"internal error: {exc!r}")

    def run(self) -> None:
        """Report every item once: as it finishes, and once stopped, the files that
        finished meanwhile and those that never ran (cancelled)."""
        reported: set[int] = set()
        began = dt.datetime.now(dt.UTC)
        splits = self._split_files()
        pool = ThreadPoolExecutor(max_workers=self.backend.config.workers, thread_name_prefix="bt-ffmpeg")
        futures: dict[Future[FileResult], int] = {f.future: pos for pos, f in splits.items()}
        try:
            for unit in queue_units(list(splits.values())):  # segments first, longest first
                pool.submit(unit)
            for pos, item in enumerate(self.items):
                if pos not in splits:
                    futures[pool.submit(self._convert_one, item)] = pos
            pending = set(futures)
            while pending:
                done, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
                for fut in done:
                    pos = futures[fut]
                    reported.add(pos)
                    self.progress.finished(self._outcome(fut, self.items[pos]))
                if self.cancel.is_set():
                    break
        finally:
            if self.cancel.is_set() or len(reported) < len(self.items):
                self.stop_all()
            pool.shutdown(wait=True, cancel_futures=True)
            for split in splits.values():
                split.abandon()
        for fut, pos in futures.items():  # stopped early: what finished meanwhile, then the rest
            if pos not in reported:
                item = self.items[pos]
                ran = fut.done() and not fut.cancelled()
                result = self._outcome(fut, item) if ran else FileResult.cancellation(item.source)
                self.progress.finished(result)
        self.progress.held(
            Capacity(
                backend="local",
                slots_per_node=self.backend.config.workers,
                nodes=[NodeSpan(node_id="local", allocated=began)],
                ended=dt.datetime.now(dt.UTC),
            )
        )
