"""The local backend: a bounded pool of ffmpeg processes on this machine."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path

from batch_transcode._commands import ffmpeg_argv
from batch_transcode._config import LocalConfig
from batch_transcode._ffmpeg import find_ffmpeg
from batch_transcode._naming import WorkItem
from batch_transcode._presets import Preset
from batch_transcode._progress import ProgressSink
from batch_transcode._report import FileResult
from batch_transcode._teardown import Teardown

__all__ = ["LocalBackend", "describe_ffmpeg_failure", "temporary_output"]

log = logging.getLogger(__name__)

STDERR_TAIL_LINES = 15
STDERR_TAIL_CHARS = 2000


def temporary_output(output: Path) -> Path:
    """A unique hidden name beside ``output`` with the same extension (ffmpeg picks the
    format from it). Outputs are renamed to their final name only once complete."""
    return output.with_name(f".bt-{uuid.uuid4().hex[:12]}.part{output.suffix}")


def stderr_tail(stderr: str) -> str:
    lines = [ln for ln in stderr.strip().splitlines() if ln.strip()]
    return "\n".join(lines[-STDERR_TAIL_LINES:])[-STDERR_TAIL_CHARS:]


def describe_ffmpeg_failure(exit_code: int | None, stderr: str, preset: Preset) -> str:
    """One line saying why, then the tail of ffmpeg's stderr."""
    low = stderr.lower()
    if preset.audio_only and (
        "does not contain any stream" in low
        or "output file does not contain any stream" in low
        or "matches no streams" in low
    ):
        why = "the input has no audio stream to convert"
    elif "invalid data found when processing input" in low or "could not find codec parameters" in low:
        why = "ffmpeg cannot read this file as media"
    elif "no such file or directory" in low:
        why = "ffmpeg could not open the input"
    elif exit_code is None:
        why = "ffmpeg did not finish in time and was stopped"
    elif exit_code < 0:
        why = f"ffmpeg was killed by signal {-exit_code}"
    else:
        why = f"ffmpeg exited with code {exit_code}"
    tail = stderr_tail(stderr)
    return f"{why}\n{tail}" if tail else why


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


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
        preset: Preset,
        progress: ProgressSink,
        teardown: Teardown,
        cancel: threading.Event,
    ) -> list[FileResult]:
        return _LocalRun(self, preset, progress, cancel).run(items)


class _LocalRun:
    """One batch of files on the local backend; ``cancel`` stops it at once."""

    def __init__(
        self, backend: LocalBackend, preset: Preset, progress: ProgressSink, cancel: threading.Event
    ) -> None:
        self.backend = backend
        self.preset = preset
        self.progress = progress
        self.cancel = cancel
        self._procs: set[subprocess.Popen[bytes]] = set()
        self._lock = threading.Lock()

    def _convert_one(self, item: WorkItem) -> FileResult:
        with self.backend._slots:
            return self._convert_one_in_slot(item)

    def _convert_one_in_slot(self, item: WorkItem) -> FileResult:
        if self.cancel.is_set():
            return FileResult.failure(item.source, "cancelled before it started")
        self.progress.started(item.source)
        started = time.monotonic()
        item.output.parent.mkdir(parents=True, exist_ok=True)
        tmp = temporary_output(item.output)
        argv = ffmpeg_argv(self.backend.ffmpeg, str(item.source), str(tmp), self.preset)
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
                _kill_group(proc)
        try:
            try:
                _, err = proc.communicate(timeout=self.backend.config.timeout)
                code: int | None = proc.returncode
            except subprocess.TimeoutExpired:
                _kill_group(proc)
                _, err = proc.communicate()
                code = None
            stderr = err.decode("utf-8", "replace")
            seconds = time.monotonic() - started
            if self.cancel.is_set():
                return FileResult.failure(item.source, "cancelled", seconds=seconds)
            if code == 0 and tmp.is_file():
                os.replace(tmp, item.output)
                return FileResult(source=item.source, output=item.output, ok=True, seconds=seconds)
            return FileResult.failure(
                item.source, describe_ffmpeg_failure(code, stderr, self.preset), seconds=seconds
            )
        finally:
            with self._lock:
                self._procs.discard(proc)
            tmp.unlink(missing_ok=True)

    def stop_all(self) -> None:
        with self._lock:
            self.cancel.set()
            procs = list(self._procs)
        for proc in procs:
            _kill_group(proc)

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
            r if r is not None else FileResult.failure(items[pos].source, "cancelled")
            for pos, r in enumerate(results)
        ]
