"""The protocol every backend implements: same inputs, same results."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Protocol

from batch_transcode._naming import WorkItem
from batch_transcode._presets import Preset
from batch_transcode._progress import ProgressSink
from batch_transcode._report import FileResult
from batch_transcode._teardown import Teardown

__all__ = ["Backend"]


class Backend(Protocol):
    """A place where ffmpeg runs.

    :meth:`open` provisions what the backend needs, pushing a teardown step on
    ``teardown`` the moment each resource exists. :meth:`run` converts the
    items and returns one result per item, in the items' order; a file that
    fails to convert is a failed result, never an exception. ``run`` is called
    from a job's worker thread; when ``cancel`` is set it stops promptly and
    returns (files not done get status ``"cancelled"``). Several runs may share one
    opened backend. ``presets`` are the run's outputs per input, in order (each item
    has one output per preset); one ffmpeg run per item writes them all.
    """

    name: str

    def open(self, teardown: Teardown) -> None: ...

    def run(
        self,
        items: Sequence[WorkItem],
        presets: Sequence[Preset],
        progress: ProgressSink,
        teardown: Teardown,
        cancel: threading.Event,
    ) -> list[FileResult]: ...
