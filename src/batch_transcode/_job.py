"""TranscodeJob: a run in progress, returned at once by ``TranscodeSession.submit``."""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Generator, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

import attrs

from batch_transcode import _telemetry as telemetry
from batch_transcode._aio import run_to_end, wait_uncancellable
from batch_transcode._backend import RunRequest
from batch_transcode._draining import Draining
from batch_transcode._errors import RunTimeoutError
from batch_transcode._naming import WorkItem
from batch_transcode._plan import Plan
from batch_transcode._presets import Preset
from batch_transcode._progress import ProgressCallback, ProgressSink
from batch_transcode._quality import Metric
from batch_transcode._report import FileResult, ProgressEvent, Report, Status
from batch_transcode._teardown import Teardown
from batch_transcode._usage import Usage

__all__ = ["BackendRun", "JobProgress", "JobSession", "TranscodeJob"]

log = logging.getLogger("batch_transcode")

#: What a job calls in its worker thread: ``Backend.run``, or an adopted job's
#: ``AttachableBackend.resume`` with its job id bound. It reports each result through
#: ``request.progress`` and returns nothing.
BackendRun = Callable[[RunRequest], None]


class JobSession(Protocol):
    """What a job knows of the :class:`~batch_transcode.TranscodeSession` it runs in
    (the session is above the job: the job names it by this protocol, not by import)."""

    @property
    def backend(self) -> str: ...

    @property
    def session_id(self) -> str | None: ...

    def close(self) -> None: ...


@attrs.define(frozen=True, kw_only=True)
class JobProgress:
    """Counts of a job's files at one moment.

    ``done`` counts every file that has ended: ``succeeded`` (converted, or ``skipped``
    as already done), ``failed`` and ``cancelled``.
    """

    total: int
    done: int
    succeeded: int
    failed: int
    skipped: int
    cancelled: int = 0

    @property
    def remaining(self) -> int:
        return self.total - self.done

    def __str__(self) -> str:
        text = f"{self.done}/{self.total} done"
        if self.failed:
            text += f", {self.failed} failed"
        if self.cancelled:
            text += f", {self.cancelled} cancelled"
        if self.skipped:
            text += f", {self.skipped} skipped"
        return text


def _queue_of(done: Mapping[int, FileResult]) -> queue.SimpleQueue[int]:
    """A completion queue holding the indexes of the results ``done`` already, in input
    order. It holds indexes, not results: a job that nobody iterates keeps every entry
    (a tuple a file would be 5 MB at 100,000 files)."""
    completed: queue.SimpleQueue[int] = queue.SimpleQueue()
    for index in sorted(done):
        completed.put(index)
    return completed


def _bar_desc(desc: str, done: Mapping[int, FileResult], total: int) -> str:
    """The bar counts the files left; its label says how many an earlier run did."""
    kept = sum(r.skipped for r in done.values())
    return f"{desc} ({kept} of {total} already done)" if kept else desc


class TranscodeJob:
    """Files being converted in the background.

    ``wait()`` returns the :class:`Report`; ``as_completed()`` yields each
    :class:`FileResult` as its file finishes; ``progress`` counts;
    ``cancel()`` stops the work (unfinished files end with status ``"cancelled"``).
    Ctrl-C while waiting cancels the job, waits for it to stop, and re-raises.

    A job is also a context manager: leaving ``with job:`` cancels it if it is
    still running; a job from :meth:`TranscodeSession.attach` owns the session
    that attached to it, and leaving the block closes that session too (removing
    the adopted job, pool and containers).

    Under asyncio, ``async for result in job`` yields each result as its file
    finishes and ``report = await job`` waits for the report, without blocking
    the event loop. Cancelling the task that awaits (or iterates) cancels the
    job and waits for it to stop before the cancellation propagates. ``async with
    job:`` leaves as ``with job:`` does, off the event loop.
    """

    def __init__(
        self,
        items: Sequence[WorkItem],
        done: Mapping[int, FileResult],
        run: BackendRun,
        *,
        presets: Sequence[Preset],
        quality: Sequence[Metric] = (),
        segment_seconds: float | None = None,
        teardown: Teardown,
        session: JobSession,
        progress: ProgressCallback | None,
        show_progress: bool,
        desc: str,
        name: str = "transcode-job",
        on_exit: Callable[[BaseException | None], None] | None = None,
        plan: Plan | None = None,
        trace_parent: Any = None,
    ) -> None:
        """``items`` in input order, the results of those already ``done`` (skipped, by
        their index); ``run`` gets a :class:`RunRequest` for the rest, with ``presets``,
        the ``quality`` metrics to measure, the ``segment_seconds`` to split long videos at
        and ``teardown``, once :meth:`start` is called. The session makes jobs."""
        self._session = session
        #: What :meth:`TranscodeSession.plan` said for these files: the report shows it.
        self._plan = plan
        #: The OpenTelemetry context of the session's span, and of this job's run once it runs.
        self._trace_parent = trace_parent
        self._run_context: Any = None
        #: What leaving ``with job:`` does instead of cancel-and-wait (attach: close the session).
        self._on_exit = on_exit
        self._items = list(items)
        if any(item.index != position for position, item in enumerate(self._items)):
            raise ValueError("a job's items are numbered by their position: 0, 1, 2, ...")
        #: Every result so far, by item index (an item's position; a list, not a dict: 0.8
        #: against 5 MB at 100,000 files): written under ``_lock``, each index once.
        self._results: list[FileResult | None] = [None] * len(self._items)
        for index, result in done.items():
            self._results[index] = result
        self._lock = threading.Lock()
        #: The indexes of ``_results`` in the order they came (for ``as_completed``).
        self._completed: queue.SimpleQueue[int] = _queue_of(done)
        self._cancel = threading.Event()
        # Not Thread.is_alive(): a join() interrupted by Ctrl-C can leave a live
        # thread marked as stopped (CPython 3.11), so completion has its own event.
        self._finished = threading.Event()
        self._error: BaseException | None = None
        self._started = time.monotonic()
        self._finished_at: float | None = None
        self._user_progress = progress
        todo = [item for item in self._items if item.index not in done]
        self._index_of: Draining[Path, int] = Draining((item.source, item.index) for item in todo)
        desc = _bar_desc(desc, done, len(self._items))
        self._sink = ProgressSink(len(todo), self._on_event, bar=show_progress, desc=desc)
        request = RunRequest(
            items=todo,
            presets=presets,
            progress=self._sink,
            teardown=teardown,
            cancel=self._cancel,
            quality=quality,
            segment_seconds=segment_seconds,
        )
        self._thread = threading.Thread(target=self._run, args=(run, request), name=name, daemon=True)
        #: Called (from the worker thread) after each result and when the job stops.
        self._watchers: list[Callable[[], None]] = []

    def start(self) -> TranscodeJob:
        """Start the work in the background (the session does, when it hands the job out);
        calling it again does nothing."""
        if self._thread.ident is None:
            self._thread.start()
        return self

    # -- worker side ----------------------------------------------------------------

    def _on_event(self, event: ProgressEvent) -> None:
        """The sink's callback: a finished file's result is recorded (once) and queued
        for ``as_completed``, then the user's callback sees the event."""
        if event.kind == "finished" and event.result is not None and self._record(event.result):
            telemetry.record_file(event.result, self._session.backend, self._run_context)
            self._notify()
        if self._user_progress is not None:
            self._user_progress(event)

    def _record(self, result: FileResult) -> bool:
        with self._lock:
            index = self._index_of.pop(result.source)  # (kept only for files to come)
            if index is None or self._results[index] is not None:
                log.warning("ignoring a second or unknown result for %s", result.source)
                return False
            self._results[index] = result
            self._completed.put(index)
        return True

    def _result(self, index: int) -> FileResult:
        """The result of item ``index``, which is in (it was queued, or the job stopped)."""
        result = self._results[index]
        if result is None:  # never: a bug here, not a user's mistake
            raise RuntimeError(f"no result for item {index}")
        return result

    def _notify(self) -> None:
        with self._lock:
            watchers = list(self._watchers)
        for watcher in watchers:
            watcher()

    def _run(self, run: BackendRun, request: RunRequest) -> None:
        """The worker thread: ``run(request)`` reports the results; files it never
        reported end cancelled (the job was cancelled) or failed (it stopped early)."""
        try:
            with telemetry.attached(self._trace_parent), telemetry.span(
                "batch_transcode.run", {"batch_transcode.files": len(request.items)}
            ):
                self._run_context = telemetry.current_context()
                if request.items:
                    run(request)
        except BaseException as exc:  # handed to the waiting thread
            self._error = exc
        finally:
            self._sink.close()
            if self._sink.capacity is not None:
                held = Usage.of(self._sink.capacity, ())
                telemetry.record_node_seconds(held.allocated_node_seconds, self._sink.capacity.backend)
            self._finished_at = time.monotonic()
            with self._lock:
                for item in request.items:
                    if self._results[item.index] is None:
                        self._results[item.index] = (
                            FileResult.cancellation(item.source)
                            if self._cancel.is_set()
                            else FileResult.failure(item.source, "not run: the job stopped early")
                        )
            self._finished.set()
            self._notify()

    # -- user side ------------------------------------------------------------------

    def done(self) -> bool:
        """True once the job has stopped (finished, failed or cancelled)."""
        return self._finished.is_set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    @property
    def progress(self) -> JobProgress:
        with self._lock:
            statuses = [r.status for r in self._results if r is not None]
        failed = statuses.count(Status.FAILED)
        cancelled = statuses.count(Status.CANCELLED)
        return JobProgress(
            total=len(self._items),
            done=len(statuses),
            succeeded=len(statuses) - failed - cancelled,
            failed=failed,
            cancelled=cancelled,
            skipped=statuses.count(Status.SKIPPED),
        )

    def cancel(self) -> None:
        """Ask the job to stop; returns at once. ``wait()`` then returns the partial report."""
        if not self._cancel.is_set():
            if not self._finished.is_set():  # a finished job has nothing to stop
                log.info("cancelling job")
            self._cancel.set()

    def join(self, timeout: float | None = None) -> bool:
        """Wait until the job has stopped (True), or ``timeout`` seconds passed (False).
        Ctrl-C while waiting cancels the job, waits for it to stop, and re-raises."""
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            while not self._finished.is_set():
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                # Short waits keep the waiting thread responsive to Ctrl-C.
                self._finished.wait(0.2 if remaining is None else min(0.2, remaining))
        except KeyboardInterrupt:
            self.cancel()
            while not self._finished.is_set():
                try:
                    self._finished.wait(0.2)
                except KeyboardInterrupt:
                    log.warning("still stopping the job; press Ctrl-C again to keep waiting")
            raise
        return True

    def wait(self, timeout: float | None = None) -> Report:
        """Block until the job stops and return its :class:`Report`.

        Raises :class:`RunTimeoutError` if ``timeout`` seconds pass first (the
        job keeps running: wait again or ``cancel()``), and re-raises what
        stopped the job if it could not run (e.g. a provisioning error).
        """
        if not self.join(timeout):
            raise RunTimeoutError(
                f"the job is still running after {timeout}s ({self.progress}); call wait() again, or cancel()"
            )
        if self._error is not None:
            raise self._error
        end = self._finished_at or time.monotonic()
        with self._lock:
            results = [self._result(item.index) for item in self._items]
        capacity = self._sink.capacity
        usage = None if capacity is None else Usage.of(capacity, results)
        return Report(results, seconds=end - self._started, usage=usage, plan=self._plan)

    def as_completed(self, timeout: float | None = None) -> Iterator[FileResult]:
        """Yield each file's result as it finishes (files skipped as already done first).

        Files the backend never reported come last: cancelled if the job was
        cancelled, else failed ("not run: the job stopped early").
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        yielded: set[int] = set()
        while len(yielded) < len(self._items):
            try:
                index = self._completed.get(timeout=0.2)
            except queue.Empty:
                if deadline is not None and time.monotonic() > deadline:
                    raise RunTimeoutError(f"no result within {timeout}s ({self.progress})") from None
                if not self.done():
                    continue
                if self._error is not None:
                    raise self._error from None
                while not self._completed.empty():
                    index = self._completed.get()
                    if index not in yielded:
                        yielded.add(index)
                        yield self._result(index)
                with self._lock:
                    rest = [(i.index, self._result(i.index)) for i in self._items if i.index not in yielded]
                for index, result in rest:
                    yielded.add(index)
                    yield result
                return
            if index not in yielded:
                yielded.add(index)
                yield self._result(index)

    def _drain(self, yielded: set[int]) -> tuple[list[FileResult], bool]:
        """Results ready now and not yielded yet, and whether they are the last ones.
        Once the job has stopped, files that never ran come last; what stopped the job
        (if it could not run) is raised after the results that were ready."""
        finished = self.done()  # read first: whatever was queued before it is drained below
        ready: list[FileResult] = []
        while True:
            try:
                index = self._completed.get_nowait()
            except queue.Empty:
                break
            if index not in yielded:
                yielded.add(index)
                ready.append(self._result(index))
        if not finished:
            return ready, len(yielded) == len(self._items)
        if self._error is not None and not ready:
            raise self._error
        with self._lock:
            rest = [(i.index, self._result(i.index)) for i in self._items if i.index not in yielded]
        for index, result in rest:
            yielded.add(index)
            ready.append(result)
        return ready, self._error is None

    async def _changes(self) -> AsyncGenerator[None, None]:
        """Yields once at once, then each time a result arrives or the job stops."""
        loop = asyncio.get_running_loop()
        wake = asyncio.Event()

        def watcher() -> None:
            try:
                loop.call_soon_threadsafe(wake.set)
            except RuntimeError:  # the loop is closed: nobody is waiting any more
                pass

        with self._lock:
            self._watchers.append(watcher)
        try:
            while True:
                wake.clear()
                yield
                await wake.wait()
        finally:
            with self._lock:
                self._watchers.remove(watcher)

    async def _stopped(self) -> None:
        """Wait, without blocking the loop, until the job has stopped."""
        changes = self._changes()
        try:
            async for _ in changes:
                if self.done():
                    return
        finally:
            await changes.aclose()

    async def _cancel_and_stop(self) -> None:
        """Cancel, and wait for the job to stop even if cancelled again meanwhile."""
        self.cancel()
        await wait_uncancellable(asyncio.ensure_future(self._stopped()))

    async def _results_as_they_finish(self) -> AsyncIterator[FileResult]:
        changes = self._changes()
        yielded: set[int] = set()
        try:
            async for _ in changes:
                while True:
                    ready, last = self._drain(yielded)
                    for result in ready:
                        yield result
                    if last:
                        return
                    if not self.done():
                        break  # wait for the next change
        except asyncio.CancelledError:
            await self._cancel_and_stop()
            raise
        finally:
            await changes.aclose()

    def __aiter__(self) -> AsyncIterator[FileResult]:
        """``async for result in job``: each :class:`FileResult` as its file finishes,
        as :meth:`as_completed` yields them."""
        return self._results_as_they_finish()

    async def _report(self) -> Report:
        try:
            await self._stopped()
        except asyncio.CancelledError:
            await self._cancel_and_stop()
            raise
        return self.wait()

    def __await__(self) -> Generator[Any, None, Report]:
        """``report = await job``: :meth:`wait`, without blocking the event loop."""
        return self._report().__await__()

    @property
    def session(self) -> JobSession:
        """The :class:`~batch_transcode.TranscodeSession` the job runs in."""
        return self._session

    def __enter__(self) -> TranscodeJob:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._on_exit is not None:
            self._on_exit(exc)  # e.g. closing the session, which cancels this job first
            return
        self.cancel()
        self.join(None)

    async def __aenter__(self) -> TranscodeJob:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """``async with job:``: what leaving ``with job:`` does, in a worker thread and
        always to its end (a job from ``attach`` closes its session there)."""
        await run_to_end(lambda: self.__exit__(exc_type, exc, tb))

    def __repr__(self) -> str:
        state = "done" if self.done() else "cancelling" if self.cancelled else "running"
        return f"<TranscodeJob {state} {self.progress}>"
