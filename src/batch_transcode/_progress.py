"""Progress reporting: a callback sink and a tqdm bar (tqdm.auto: a widget in notebooks)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from batch_transcode._report import FileResult, ProgressEvent, Status
from batch_transcode._usage import Capacity

__all__ = ["ProgressCallback", "ProgressSink"]

ProgressCallback = Callable[[ProgressEvent], None]


class ProgressSink:
    """Counts finished files and fans events out to a callback and an optional tqdm bar.

    ``done`` counts every finished file, ``failed`` and ``cancelled`` those that ended
    so. Thread-safe: backends call :meth:`started` and :meth:`finished` from worker
    threads; the callback is called under the sink's lock, one event at a time.
    """

    def __init__(
        self,
        total: int,
        callback: ProgressCallback | None = None,
        *,
        bar: bool = False,
        desc: str = "converting",
    ) -> None:
        self.total = total
        self.done = 0
        self.failed = 0
        self.cancelled = 0
        #: Set by :meth:`held` when the backend says what it held.
        self.capacity: Capacity | None = None
        self._lock = threading.Lock()
        self._callback = callback
        self._bar: Any = None
        if bar:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, desc=desc, unit="file", dynamic_ncols=True)

    def started(self, source: Path) -> None:
        if self._callback is not None:
            with self._lock:
                event = ProgressEvent(kind="started", source=source, done=self.done, total=self.total)
                self._callback(event)

    def _advance_bar(self, done: int, failed: int) -> None:
        if self._bar is not None:
            if done > self._bar.n:
                self._bar.update(done - self._bar.n)
            postfix = {"failed": failed, "cancelled": self.cancelled}
            if failed or self.cancelled:
                self._bar.set_postfix({k: n for k, n in postfix.items() if n}, refresh=False)

    def counts(self, done: int, failed: int) -> None:
        """Move the bar from service-side counts (a backend that learns per-file
        results only at the end, like Azure Batch). Callbacks get per-file events
        from :meth:`finished` as usual."""
        with self._lock:
            self._advance_bar(max(done, self.done), max(failed, self.failed))

    def held(self, capacity: Capacity) -> None:
        """What the backend held for the run (its nodes and slots): the report's usage."""
        with self._lock:
            self.capacity = capacity

    def finished(self, result: FileResult) -> None:
        with self._lock:
            self.done += 1
            if result.status is Status.FAILED:
                self.failed += 1
            elif result.cancelled:
                self.cancelled += 1
            self._advance_bar(self.done, self.failed)
            if self._callback is not None:
                self._callback(
                    ProgressEvent(
                        kind="finished", source=result.source, done=self.done, total=self.total, result=result
                    )
                )

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
