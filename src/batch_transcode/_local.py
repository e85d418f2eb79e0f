"""The local backend: a bounded pool of ffmpeg processes on this machine."""

from __future__ import annotations

import logging
import os
import subprocess
import threading
import time
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path

from batch_transcode._commands import ffmpeg_argv
from batch_transcode._config import LocalConfig
from batch_transcode._ffmpeg import (
    DURATION_UNKNOWN_LINE,
    EMPTY_OUTPUT_LINE,
    describe_ffmpeg_failure,
    find_ffmpeg,
    probe_duration,
    temporary_output,
)
from batch_transcode._naming import WorkItem
from batch_transcode._presets import Preset
from batch_transcode._process import kill_process_group
from batch_transcode._progress import ProgressSink
from batch_transcode._report import FileResult
from batch_transcode._teardown import Teardown

__all__ = ["LocalBackend"]

log = logging.getLogger(__name__)


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

    def run(
        self,
        items: Sequence[WorkItem],
        presets: Sequence[Preset],
        progress: ProgressSink,
        teardown: Teardown,
        cancel: threading.Event,
    ) -> list[FileResult]:
        return _LocalRun(self, presets, progress, cancel).run(items)


class _LocalRun:
    """One batch of files on the local backend; ``cancel`` stops it at once."""

    def __init__(
        self,
        backend: LocalBackend,
        presets: Sequence[Preset],
        progress: ProgressSink,
        cancel: threading.Event,
    ) -> None:
        self.backend = backend
        self.presets = tuple(presets)
        self.progress = progress
        self.cancel = cancel
        self._procs: set[subprocess.Popen[bytes]] = set()
        self._lock = threading.Lock()

    def _convert_one(self, item: WorkItem) -> FileResult:
        with self.backend._slots:
            return self._convert_one_in_slot(item)

    def _convert_one_in_slot(self, item: WorkItem) -> FileResult:
        if self.cancel.is_set():
            return FileResult.cancellation(item.source, "cancelled before it started")
        self.progress.started(item.source)
        started = time.monotonic()
        duration = None
        if any(p.seek_fraction is not None for p in self.presets):
            duration = probe_duration(self.backend.ffmpeg, str(item.source))
            if duration is None:
                why = describe_ffmpeg_failure(1, DURATION_UNKNOWN_LINE, self.presets)
                return FileResult.failure(item.source, why, seconds=time.monotonic() - started)
        item.output.parent.mkdir(parents=True, exist_ok=True)
        tmps = [temporary_output(output) for output in item.outputs]
        argv = ffmpeg_argv(
            self.backend.ffmpeg,
            str(item.source),
            [(str(tmp), preset) for tmp, preset in zip(tmps, self.presets, strict=True)],
            duration=duration,
        )
        try:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                start_new_session=True,  # Ctrl-C reaches us, and we stop the children ourselves
            )
        except OSError as exc:
            return FileResult.failure(item.source, f"could not start ffmpeg: {exc}")
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
            stderr = err.decode("utf-8", "replace")
            seconds = time.monotonic() - started
            if self.cancel.is_set():
                return FileResult.cancellation(item.source, seconds=seconds)
            if code == 0:
                empty = [n for n, tmp in enumerate(tmps) if not _written(tmp)]
                if not empty:
                    for tmp, output in zip(tmps, item.outputs, strict=True):
                        os.replace(tmp, output)
                    return FileResult.converted(
                        item.source, item.output, outputs=item.outputs, seconds=seconds
                    )
                stderr += "".join(
                    "\n" + EMPTY_OUTPUT_LINE.format(index=n, extension=self.presets[n].extension)
                    for n in empty
                )
            return FileResult.failure(
                item.source, describe_ffmpeg_failure(code, stderr, self.presets), seconds=seconds
            )
        finally:
            with self._lock:
                self._procs.discard(proc)
            for tmp in tmps:
                tmp.unlink(missing_ok=True)

    def stop_all(self) -> None:
        with self._lock:
            self.cancel.set()
            procs = list(self._procs)
        for proc in procs:
            kill_process_group(proc)

    def run(self, items: Sequence[WorkItem]) -> list[FileResult]:
        results: list[FileResult | None] = [None] * len(items)
        pool = ThreadPoolExecutor(max_workers=self.backend.config.workers, thread_name_prefix="bt-ffmpeg")
        futures: dict[Future[FileResult], int] = {}
        try:
            for pos, item in enumerate(items):
                futures[pool.submit(self._convert_one, item)] = pos
            pending = set(futures)
            while pending:
                done, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
                for fut in done:
                    pos = futures[fut]
                    try:
                        result = fut.result()
                    except Exception as exc:  # a bug or OS error in one file never sinks the batch
                        log.exception("converting %s failed unexpectedly", items[pos].source)
                        result = FileResult.failure(items[pos].source, f"internal error: {exc!r}")
                    results[pos] = result
                    self.progress.finished(result)
                if self.cancel.is_set():
                    break
        finally:
            if self.cancel.is_set() or any(r is None for r in results):
                self.stop_all()
            pool.shutdown(wait=True, cancel_futures=True)
        for fut, pos in futures.items():  # files that finished while we were stopping
            if results[pos] is None and fut.done() and not fut.cancelled() and fut.exception() is None:
                results[pos] = fut.result()
        return [
            r if r is not None else FileResult.cancellation(items[pos].source)
            for pos, r in enumerate(results)
        ]
