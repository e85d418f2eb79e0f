"""The contract between a session and its backends: one :class:`RunRequest` in, results out
through its progress sink.

::

    Backend             open(teardown); run(request)            local and Azure
    AttachableBackend   + session_id; attach(ident, teardown)   Azure: adopt a job another
                          -> AttachedJob; resume(job_id, request)   process submitted
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Protocol, runtime_checkable

import attrs

from batch_transcode._naming import WorkItem
from batch_transcode._presets import Preset
from batch_transcode._progress import ProgressSink
from batch_transcode._quality import Metric
from batch_transcode._teardown import Teardown

__all__ = ["AttachableBackend", "AttachedJob", "Backend", "RunRequest"]


@attrs.define(frozen=True, kw_only=True)
class RunRequest:
    """One batch of files for a backend to convert.

    ``items`` are the files (each with one output per preset), ``presets`` the run's
    outputs per input, in order (one ffmpeg run per item writes them all). The backend
    reports each item's :class:`~batch_transcode.FileResult` once, as soon as it is
    known, through ``progress.finished``: that is the only way results reach the job.
    ``teardown`` takes the delete step of anything the run creates, the moment it
    exists; once ``cancel`` is set the run stops promptly (the job marks what was not
    reported as cancelled). ``quality`` names the metrics to measure each video output
    by against its input, where the encode ran (none: not measured).
    ``segment_seconds`` (``None``: never) splits each long video input into segments
    of about that many seconds, encoded in parallel and stitched
    (:mod:`batch_transcode._split`).
    """

    items: tuple[WorkItem, ...] = attrs.field(converter=tuple[WorkItem, ...])
    presets: tuple[Preset, ...] = attrs.field(converter=tuple[Preset, ...])
    progress: ProgressSink
    teardown: Teardown
    cancel: threading.Event
    quality: tuple[Metric, ...] = attrs.field(default=(), converter=tuple[Metric, ...])
    segment_seconds: float | None = None


class Backend(Protocol):
    """A place where ffmpeg runs.

    :meth:`open` provisions what the backend needs, pushing a teardown step on
    ``teardown`` the moment each resource exists. :meth:`run` converts a request's
    items, reporting every result through ``request.progress`` (a file that fails to
    convert is a failed result, never an exception); it is called from a job's worker
    thread. Several runs may share one opened backend.
    """

    name: str

    def open(self, teardown: Teardown) -> None: ...

    def run(self, request: RunRequest) -> None: ...


class AttachedJob(Protocol):
    """A job another process submitted, as far as a session needs to know it."""

    @property
    def job_id(self) -> str: ...

    @property
    def presets(self) -> tuple[Preset, ...]: ...

    @property
    def quality(self) -> tuple[Metric, ...]: ...

    @property
    def segment_seconds(self) -> float | None: ...

    def work_items(self, output_dir: Path) -> list[WorkItem]: ...


@runtime_checkable
class AttachableBackend(Backend, Protocol):
    """A backend whose sessions outlive their process (Azure): it can take over a job
    another process submitted and watch it to the end."""

    @property
    def session_id(self) -> str | None: ...

    def attach(self, ident: str, teardown: Teardown) -> AttachedJob:
        """Take over the job ``ident`` names (a session or job id), its resources' delete
        steps pushed on ``teardown``; in place of :meth:`open`."""
        ...

    def resume(self, job_id: str, request: RunRequest) -> None:
        """Watch the adopted job ``job_id`` and report one result per item."""
        ...
