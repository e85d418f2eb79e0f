"""One batch of files on an open Azure session: one job, streamed.

:meth:`AzureRun.run` writes the job manifest and creates the job, then runs three
stages at once: inputs upload (``upload_concurrency`` at a time); each landed
input becomes a task, added in collections of up to 100 (sent when full or after
:data:`SUBMIT_LINGER`); finished tasks are read as they finish
(:func:`~batch_transcode._azure.monitor.list_finished`) and each output downloads
at once (``download_concurrency`` at a time), its :class:`FileResult` reported
as soon as it is there. After the last collection the job is set to end itself
when its tasks complete. The run is done when every task id is accounted for,
never on the (possibly stale) task counts alone. :meth:`AzureRun.resume` is the
same run picked up by another process (attaching after a crash): the job and its
tasks exist, so it watches and collects, keeping outputs already downloaded.

Every file ends as one :class:`FileResult` with a typed ``status``; a run that is
cancelled starts no new upload, task collection or download, and its job is
deleted. A file encoded in segments carries its segment, audio and stitch tasks as
``pieces`` (:class:`TaskSpan`), read from the same listings.
"""

from __future__ import annotations

import datetime as dt
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any

import attrs
from azure.batch import models as bm

from batch_transcode import _telemetry as telemetry
from batch_transcode._azure import builders, names
from batch_transcode._azure._calls import call
from batch_transcode._azure.capabilities import check_nodes, check_staged, nodes_report_their_build
from batch_transcode._azure.cleanup import delete_job
from batch_transcode._azure.monitor import (
    Counts,
    TaskOutcome,
    auto_pool_id,
    check_pool,
    job_counts,
    list_finished,
    log_counts,
    pool_capacity,
)
from batch_transcode._azure.opened import OpenSession
from batch_transcode._azure.split import SplitJob, uses_dependencies
from batch_transcode._azure.staging import StagedInput, StagingCancelled, UploadLedger
from batch_transcode._azure.submit import TaskFeed
from batch_transcode._backend import RunRequest
from batch_transcode._draining import Draining
from batch_transcode._errors import AzureError, QualityError, RunTimeoutError, TranscodeError
from batch_transcode._ffmpeg import describe_ffmpeg_failure, stderr_tail
from batch_transcode._naming import WorkItem
from batch_transcode._quality import Metric, Score, parse_logs
from batch_transcode._redact import redact
from batch_transcode._report import FileResult, PieceKind, Status, TaskSpan, with_pieces
from batch_transcode._telemetry import ContextExecutor
from batch_transcode._usage import Capacity

__all__ = ["AzureRun"]

log = logging.getLogger(__name__)

#: Finished tasks are listed at least this often (seconds), even when the task counts,
#: which may lag, do not move.
LIST_AT_LEAST_EVERY = 5.0
#: A listing asks for tasks whose state changed since the newest one seen, less this margin,
#: so that a task stamped just before it but not yet listed is not missed.
LISTING_MARGIN = dt.timedelta(seconds=1)
#: Listings the counts ask for are at least this far apart (seconds): only the tasks of the
#: margin's last second are read again by the next one, about a third of a listing, so
#: listing bytes stay O(tasks) (about 1.3 x one listing of every task over a run).
LISTING_GAP = 3 * LISTING_MARGIN.total_seconds()


class AzureRun:
    """The files of ``request`` as job ``job_id`` on ``session``."""

    def __init__(self, session: OpenSession, ledger: UploadLedger, job_id: str, request: RunRequest) -> None:
        self.session = session
        self.config = session.config
        self.ledger = ledger
        self.job_id = job_id
        self.request = request
        self.items = list(request.items)
        self.presets = request.presets
        self.progress = request.progress
        self.cancel = request.cancel
        #: Set when the run fails or ends while staging or downloads are still under way.
        self.halt = threading.Event()
        #: Set when tasks held for the node check are let through to the feed.
        self.tasks_released = threading.Event()
        #: What staging, task submission and downloads stop on: ``cancel`` or ``halt``.
        self.stop = _Either(request.cancel, self.halt)
        #: The inputs encoded in segments (``request.segment_seconds``).
        self.split = SplitJob(session, job_id, request.presets, request.segment_seconds)

    # -- a new job -------------------------------------------------------------------------

    def run(self) -> None:
        """Stage, submit, watch and collect at once; each result reported as it is known."""
        if self.cancel.is_set():
            return
        check_staged(self.config, self.presets, self.request.quality)
        staging = self.session.staging
        # Tasks are added while the inputs upload: the submit span lasts until the last
        # collection is in, its task-collection requests nested under it.
        submitting = telemetry.start_span("batch_transcode.submit", {"batch_transcode.job_id": self.job_id})
        try:
            with telemetry.attached(telemetry.current_context(submitting)):
                out_url = self._create_job()
                feed = TaskFeed(self.session.batch, self.job_id, self.config.retry, cancel=self.stop)
        except BaseException as exc:
            telemetry.end_span(submitting, exc)
            raise
        gate = _Gate(feed) if nodes_report_their_build(self.config, self.session.pool_id) else None

        def staged(item: WorkItem, inp: StagedInput) -> None:
            if inp.uploaded:
                telemetry.record_staged(inp.size)
            for task in self._tasks(item, inp.sas_url, out_url):
                if gate is None:
                    feed.add(task)
                else:
                    gate.add(task)

        def produce() -> None:
            checking = self._check_nodes(gate)
            try:
                with telemetry.span("batch_transcode.stage", {"batch_transcode.files": len(self.items)}):
                    staging.upload_inputs(self.items, self.ledger, cancel=self.stop, on_staged=staged)
            except StagingCancelled:
                if gate is not None and gate.error is not None:
                    raise gate.error from None
                raise
            finally:
                if checking is not None:
                    checking.join()
                feed.close()  # what landed is added (unless halted), errors or not
                telemetry.end_span(submitting)
            if gate is not None and gate.error is not None:
                raise gate.error
            if not self.stop.is_set():
                self._terminate_when_done()

        _Collector(self, self.items, produce, hurry=feed.hurry).collect()

    def _check_nodes(self, gate: _Gate | None) -> threading.Thread | None:
        """Check the nodes' ffmpeg in a thread of its own, while the inputs upload; the
        gate holds the tasks until it passed (a failure halts the run)."""
        if gate is None or self.session.pool_id is None:
            return None
        pool_id = self.session.pool_id

        def check() -> None:
            try:
                if check_nodes(
                    self.session.batch,
                    pool_id,
                    self.config,
                    self.presets,
                    self.request.quality,
                    deadline=self.session.deadline,
                    stop=self.stop,
                ):
                    gate.open()
                    self.tasks_released.set()  # the watch polls afresh: tasks start now
            except TranscodeError as exc:
                gate.error = exc
                self.halt.set()

        thread = threading.Thread(target=telemetry.carry(check), name=f"bt-check-{self.job_id}", daemon=True)
        thread.start()
        return thread

    def _tasks(self, item: WorkItem, input_url: str, out_url: str) -> list[bm.BatchTaskCreateOptions]:
        """The file's task, or the tasks of its segments, audio and stitch."""
        plan = self.split.plan(item)
        if plan is not None:
            return self.split.tasks(
                item, plan, input_url=input_url, output_container_url=out_url, quality=self.request.quality
            )
        return [self._task(item, input_url, out_url)]

    def _task(self, item: WorkItem, input_url: str, out_url: str) -> bm.BatchTaskCreateOptions:
        return builders.task_create_options(
            config=self.config,
            setup=self.session.setup,
            job_id=self.job_id,
            index=item.index,
            source_name=item.relative_source,
            input_url=input_url,
            output_container_url=out_url,
            output_blob_names=names.output_blobs(item.relative_outputs),
            presets=self.presets,
            quality=self.request.quality,
        )

    def _create_job(self) -> str:
        """Write the job's manifest, create the job; the output container's SAS URL for
        its tasks."""
        session, job_id = self.session, self.job_id
        manifest = session.manifest(
            job_id, self.items, self.presets, self.request.quality, self.request.segment_seconds
        )
        session.staging.write_output_blob(manifest.blob_name, manifest.to_json())
        job = builders.job_create_options(
            job_id=job_id,
            names=session.names,
            info=builders.pool_info(self.config, session.names, session.setup),
            max_wall_clock=session.deadline_utc - dt.datetime.now(dt.UTC),
            uses_task_dependencies=uses_dependencies(self.presets, self.request.segment_seconds),
        )
        self.request.teardown.push(
            f"job {job_id}", lambda: delete_job(session.batch, job_id, self.config.retry)
        )
        call(
            self.config.retry,
            f"create job {job_id}",
            lambda: session.batch.create_job(job),
            created="JobExists",
            job_id=job_id,
        )
        log.info("job %s created with %d task(s) to add", job_id, len(self.items))
        return session.staging.output_container_sas_url()

    # -- a job another process submitted ---------------------------------------------------

    def resume(self) -> None:
        """Watch the existing job and collect; files whose task was never added fail."""
        batch, job_id = self.session.batch, self.job_id

        def listing() -> set[str]:
            return {t.id or "" for t in batch.list_tasks(job_id, select=["id"])}

        present = call(self.config.retry, f"list tasks of job {job_id}", listing, job_id=job_id)
        self.split.adopt(self.items, present)
        added = [i for i in self.items if names.task_id(i.index) in present]
        never = [i for i in self.items if names.task_id(i.index) not in present]
        if never:
            log.warning(
                "job %s: %d of %d file(s) were never added to the job (the submitting process "
                "stopped first); convert them again",
                job_id,
                len(never),
                len(self.items),
            )
        for item in never:
            self.progress.finished(
                FileResult.failure(
                    item.source,
                    "not converted: the file was never added to the job before the submitting "
                    "process stopped; convert it again",
                    task_id=names.task_id(item.index),
                )
            )
        self._terminate_when_done()  # the submitting process may have stopped before it did
        _Collector(self, added, None, keep_existing=True).collect()

    # -- both --------------------------------------------------------------------------------

    def _terminate_when_done(self) -> None:
        """All tasks are in: let the job end itself when they complete."""
        batch, job_id = self.session.batch, self.job_id
        try:
            call(
                self.config.retry,
                f"update job {job_id}",
                lambda: batch.update_job(job_id, builders.job_terminate_when_done()),
                job_id=job_id,
            )
        except AzureError as exc:  # the job still ends: teardown, or its max wall clock
            log.warning("could not set job %s to terminate when its tasks complete: %s", job_id, exc)

    def _stop_job(self) -> None:
        try:
            delete_job(self.session.batch, self.job_id, self.config.retry, wait=0)
        except AzureError as exc:
            log.warning("could not delete job %s: %s", self.job_id, exc)

    def _stderr(self, task_id: str) -> str:
        """A failed task's stderr: uploaded to the output container on failure, else read
        through the task file API."""
        blob = names.diagnostics_path(self.job_id, task_id, "stderr.txt")
        try:
            data = self.session.staging.read_output_blob(blob)
            if data is not None:
                return data.decode("utf-8", "replace")
        except TranscodeError as exc:
            log.debug("stderr of task %s not in the output container: %s", task_id, exc)
        batch, job_id = self.session.batch, self.job_id
        try:
            text = call(
                self.config.retry,
                f"read the stderr of task {task_id}",
                lambda: b"".join(batch.download_task_file(job_id, task_id, "stderr.txt")),
                missing_ok=True,
                job_id=job_id,
                task_id=task_id,
            )
        except AzureError as exc:
            log.debug("stderr of task %s could not be read: %s", task_id, exc)
            return ""
        return (text or b"").decode("utf-8", "replace")

    def _failure_text(self, outcome: TaskOutcome | None) -> str:
        if outcome is None:
            return "the task was not found in the job (it was never added)"
        if outcome.state is not bm.BatchTaskState.COMPLETED:
            return f"the task did not complete (state {outcome.state.value})"
        if outcome.exit_code not in (None, 0):
            text = describe_ffmpeg_failure(outcome.exit_code, self._stderr(outcome.task_id), self.presets)
            return f"{text}\n(task {outcome.task_id}, exit code {outcome.exit_code})"
        why = (
            f"{outcome.failure_code}: {redact(outcome.failure_message or '')}"
            if outcome.failure_code
            else "failed"
        )
        tail = stderr_tail(self._stderr(outcome.task_id))
        lines = [f"the task failed ({why})", tail, f"(task {outcome.task_id})"]
        return "\n".join(line for line in lines if line)

    def finish(
        self, item: WorkItem, outcome: TaskOutcome | None, *, keep_existing: bool = False
    ) -> FileResult:
        """The result of one finished task: its output downloaded (or kept, when
        ``keep_existing`` and a complete output is there), or why it failed."""
        tid = names.task_id(item.index)
        seconds = outcome.seconds if outcome is not None else None
        ran = _ran(outcome)
        if outcome is None or not outcome.succeeded:
            return FileResult.failure(
                item.source, self._failure_text(outcome), seconds=seconds, task_id=tid, **ran
            )
        if keep_existing and _complete_output(item):
            return FileResult.already_done(
                item.source, item.outputs[0], outputs=item.outputs, task_id=tid, **ran
            )
        if self.stop.is_set():
            return FileResult.cancellation(
                item.source, "converted, but cancelled before its output was downloaded", task_id=tid
            )
        error, notes = self._download(item)
        if error is not None:
            return FileResult.failure(item.source, error, seconds=seconds, task_id=tid, **ran)
        quality, quality_notes = self._quality(item, tid)
        return FileResult.converted(
            item.source,
            item.outputs[0],
            outputs=item.outputs,
            seconds=seconds,
            task_id=tid,
            quality=quality,
            notes=[*notes, *quality_notes],
            **ran,
        )

    def _download(self, item: WorkItem) -> tuple[str | None, list[str]]:
        """Download a converted file's outputs (a split file's checked first): why not, or
        the notes of its result."""
        if item.index in self.split.files:
            return self.split.deliver(item), self.split.notes(item)
        download = self.session.staging.download(item)
        if not download.ok:
            return f"converted, but the output could not be downloaded: {download.error}", []
        return None, []

    def piece_failed(self, item: WorkItem, outcome: TaskOutcome) -> FileResult:
        """A segment or audio task of split ``item`` failed: the file fails with its error,
        and its stitch, which would wait for ever, is ended."""
        self.split.stop_stitch(item.index)
        number = outcome.task_id.rsplit("-s", 1)[-1]
        what = "its audio" if outcome.task_id.endswith("-a") else f"segment {int(number) + 1}"
        text = f"{self._failure_text(outcome)}\n(encoding {what} of the split file; its stitch did not run)"
        return FileResult.failure(item.source, text, seconds=outcome.seconds, task_id=outcome.task_id)

    def _quality(self, item: WorkItem, tid: str) -> tuple[list[dict[Metric, Score] | None] | None, list[str]]:
        """The scores the task measured on the node, per output (``None`` for an output not
        measured), read from its logs in the output container; a log that is missing or
        unreadable is a note, never a failure."""
        metrics = self.request.quality
        logs = builders.quality_logs(self.presets, metrics)
        if not logs:
            return None, []
        staging, job_id = self.session.staging, self.job_id

        def read(name: str) -> str | None:
            data = staging.read_output_blob(names.quality_path(job_id, tid, name))
            return None if data is None else data.decode("utf-8", "replace")

        scores: list[dict[Metric, Score] | None] = []
        notes: list[str] = []
        for n, output in enumerate(item.outputs):
            if n not in logs:
                scores.append(None)
                continue
            try:
                scores.append(parse_logs(metrics, read, index=n))
            except (QualityError, TranscodeError) as exc:
                scores.append(None)
                notes.append(f"quality not measured for {output.name}: {exc}")
        return scores, notes


class _Gate:
    """Holds tasks until :meth:`open` (the nodes' ffmpeg was checked), then lets them
    through to the feed."""

    def __init__(self, feed: TaskFeed) -> None:
        self._feed = feed
        self._lock = threading.Lock()
        self._held: list[bm.BatchTaskCreateOptions] | None = []
        #: Why the check failed (the run then stops with it).
        self.error: TranscodeError | None = None

    def add(self, task: bm.BatchTaskCreateOptions) -> None:
        with self._lock:
            if self._held is not None:
                self._held.append(task)
                return
        self._feed.add(task)

    def open(self) -> None:
        with self._lock:
            held, self._held = self._held or [], None
        for task in held:
            self._feed.add(task)


class _Either:
    """Set when either event is."""

    def __init__(self, first: threading.Event, second: threading.Event) -> None:
        self._events = (first, second)

    def is_set(self) -> bool:
        return any(e.is_set() for e in self._events)


def _ran(outcome: TaskOutcome | None) -> dict[str, Any]:
    """Where and when a task ran, as :class:`FileResult` keywords (none for a task not found)."""
    if outcome is None:
        return {}
    return {
        "started": outcome.started,
        "ended": outcome.ended,
        "node": outcome.node,
        "retries": outcome.retries,
        "requeues": outcome.requeues,
    }


def _piece_span(outcome: TaskOutcome) -> TaskSpan | None:
    """A finished segment, audio or stitch task as a :class:`TaskSpan` (``None``: it never
    started, like a stitch ended because a piece failed)."""
    if outcome.started is None or outcome.ended is None:
        return None
    tid, index = outcome.task_id, None
    if names.piece_parent(tid) is None:
        kind = PieceKind.STITCH
    elif tid.endswith("-a"):
        kind = PieceKind.AUDIO
    else:
        kind, index = PieceKind.SEGMENT, int(tid.rsplit("-s", 1)[-1])
    return TaskSpan(
        kind=kind,
        status=Status.CONVERTED if outcome.succeeded else Status.FAILED,
        started=outcome.started,
        ended=outcome.ended,
        index=index,
        node=outcome.node,
        task_id=tid,
        retries=outcome.retries,
        requeues=outcome.requeues,
    )


def _pieces_first(outcomes: list[TaskOutcome]) -> list[TaskOutcome]:
    """Segment and audio tasks before the others: a stitch listed with its pieces (its
    id sorts first) finds them read."""
    return sorted(outcomes, key=lambda o: names.piece_parent(o.task_id) is None)


def _complete_output(item: WorkItem) -> bool:
    """Outputs from an earlier download: outputs only carry their final name once complete."""
    try:
        return all(output.stat().st_size > 0 for output in item.outputs)
    except OSError:
        return False


def _log_done(job_id: str, ok: int, reported: int, total: int) -> None:
    log.info(
        "job %s: %d/%d converted, %d failed, %d not done", job_id, ok, total, reported - ok, total - reported
    )


class _Collector:
    """Watches ``items``' tasks finish and collects each one at once (see the module notes).

    ``produce`` (uploads and task collections) runs beside it in a thread of its own;
    its error, if any, is raised here. Done when every task id is accounted for.

    Per file it keeps only what is still to come: the items whose task was not read yet
    (``unread``) and the downloads under way; a result, once reported, is the job's.
    """

    def __init__(
        self,
        run: AzureRun,
        items: Sequence[WorkItem],
        produce: Callable[[], None] | None,
        *,
        keep_existing: bool = False,
        hurry: Callable[[], None] | None = None,
    ) -> None:
        self.run = run
        self.total = len(items)
        self.produce = produce
        #: Called when the job has no task waiting while inputs are still staged.
        self.hurry = hurry
        self.keep_existing = keep_existing
        #: The items whose finished task was not read yet, by task id.
        self.unread = Draining((names.task_id(i.index), i) for i in items)
        #: Results reported (and how many of them converted).
        self.reported = 0
        self.ok = 0
        self.pending: dict[Future[FileResult], WorkItem] = {}
        #: Downloads that ended, in the order they did (so that collecting them never
        #: walks every pending download).
        self._landed: queue.SimpleQueue[Future[FileResult]] = queue.SimpleQueue()
        #: The segment and audio tasks of split files read so far.
        self.pieces_seen: set[str] = set()
        #: The spans of the pieces read of split files still unread, by the file's task id.
        self.spans: dict[str, list[TaskSpan]] = {}
        #: ``stateTransitionTime`` of the newest finished task listed so far.
        self.newest: dt.datetime | None = None
        #: The pool the job runs on, once known (an auto-pool's from the job).
        self.pool_id: str | None = run.session.pool_id
        self._downloads = ContextExecutor(
            max_workers=max(1, run.config.download_concurrency), thread_name_prefix="bt-download"
        )
        #: The collect span's context: each output's download (and its requests) under it.
        self._collecting: Any = None

    def collect(self) -> None:
        """Watch and collect until every task is accounted for or the run is cancelled
        (files not reported by then are the job's to mark cancelled)."""
        run = self.run
        producer = ContextExecutor(max_workers=1, thread_name_prefix="bt-stage")
        produced = producer.submit(self.produce) if self.produce is not None else None
        collecting = telemetry.start_span("batch_transcode.collect", {"batch_transcode.job_id": run.job_id})
        self._collecting = telemetry.current_context(collecting)
        try:
            with telemetry.span("batch_transcode.watch", {"batch_transcode.job_id": run.job_id}, azure=True):
                finished = self._watch(produced)
        finally:
            run.halt.set()  # no new upload, task collection or download from here on
            producer.shutdown(wait=True)
            self._downloads.shutdown(wait=True)  # no new download starts once cancelled
            self._harvest()
            telemetry.end_span(collecting)
        if not finished:
            run._stop_job()
        _log_done(run.job_id, self.ok, self.reported, self.total)
        self._report_capacity()

    def _report_capacity(self) -> None:
        """Tell the job what the pool held (its nodes from their allocation, its slots), for
        the report's usage; a pool that is gone already (an auto-pool) leaves it unknown."""
        run = self.run
        pool_id = self.pool_id or run.session.pool_id
        if pool_id is None:
            return
        try:
            slots, nodes = pool_capacity(run.session.batch, pool_id, run.config)
        except AzureError as exc:
            log.debug("could not read the nodes of pool %s for the report: %s", pool_id, exc)
            return
        ended = dt.datetime.now(dt.UTC)
        run.progress.held(Capacity(backend="azure", slots_per_node=slots, nodes=nodes, ended=ended))

    @property
    def read(self) -> int:
        """How many finished tasks were read."""
        return self.total - len(self.unread)

    def _harvest(self, fut: Future[FileResult] | None = None) -> None:
        """Report the downloads that ended (``fut`` first)."""
        while True:
            if fut is None:
                try:
                    fut = self._landed.get_nowait()
                except queue.Empty:
                    return
            del self.pending[fut]
            result = fut.result()
            self.reported += 1
            self.ok += result.ok
            self.run.progress.finished(result)
            fut = None

    def _sleep(self, seconds: float) -> None:
        """Wait up to ``seconds``; back as soon as a download ends (and reported) or the run
        is cancelled."""
        if not self.pending:
            self.run.cancel.wait(seconds)
            return
        end = time.monotonic() + seconds
        while not self.run.cancel.is_set():
            left = end - time.monotonic()
            try:  # a download's end wakes this at once; a cancel within 0.1 s
                fut = self._landed.get(timeout=max(0.0, min(0.1, left)))
            except queue.Empty:
                if left <= 0.1:
                    return
                continue
            self._harvest(fut)
            return

    def _list(self, *, full: bool = False) -> int:
        """Read finished tasks (all of them when ``full``); how many were new."""
        run = self.run
        since = self.newest - LISTING_MARGIN if self.newest is not None and not full else None
        new = 0
        for outcome in _pieces_first(list_finished(run.session.batch, run.job_id, run.config, since)):
            if outcome.changed_at is not None and (self.newest is None or outcome.changed_at > self.newest):
                self.newest = outcome.changed_at
            parent = names.piece_parent(outcome.task_id)
            if parent is not None:  # a segment or audio task of a split file
                new += self._piece(outcome, parent)
                continue
            item = self.unread.pop(outcome.task_id)
            if item is None:
                continue  # not ours, or read already
            self._collect(item, self._finish, outcome)
            new += 1
        return new

    def _collect(
        self, item: WorkItem, finish: Callable[[WorkItem, TaskOutcome], FileResult], outcome: TaskOutcome
    ) -> None:
        """The file's task (or a failed piece of it) is accounted for (no longer
        ``unread``): its result is made in a download thread, with the pieces that ran
        for it when it was split."""
        tid = names.task_id(item.index)
        pieces = self.spans.pop(tid, [])
        split = item.index in self.run.split.files
        stitch = _piece_span(outcome) if split and outcome.task_id == tid else None
        pieces += [stitch] if stitch is not None else []

        def result() -> FileResult:
            return with_pieces(finish(item, outcome), pieces)

        with telemetry.attached(self._collecting):
            fut = self._downloads.submit(result)
        self.pending[fut] = item
        fut.add_done_callback(self._landed.put)

    def _piece(self, outcome: TaskOutcome, parent: str) -> int:
        """A piece of a split file finished (1 when first read): a failed one fails the
        file at once (its stitch would never run)."""
        if outcome.task_id in self.pieces_seen:
            return 0
        self.pieces_seen.add(outcome.task_id)
        span = _piece_span(outcome)
        if span is not None and parent in self.unread:
            self.spans.setdefault(parent, []).append(span)
        if not outcome.succeeded:
            item = self.unread.pop(parent)
            if item is not None:
                self._collect(item, self.run.piece_failed, outcome)
        return 1

    def _finish(self, item: WorkItem, outcome: TaskOutcome) -> FileResult:
        return self.run.finish(item, outcome, keep_existing=self.keep_existing)

    def _watch(self, produced: Future[None] | None) -> bool:
        """Poll until every task is accounted for (True) or the run is cancelled (False)."""
        run = self.run
        poll = _PollState(pool_id=run.session.pool_id, interval=run.config.poll_interval)
        while True:
            self._harvest()
            if run.tasks_released.is_set():  # held tasks just went in: no backed-off poll
                run.tasks_released.clear()
                poll.interval, poll.next_poll = run.config.poll_interval, time.monotonic()
            ended = self._ended(produced)
            if ended is not None:
                return ended
            staging_done = produced is None or produced.done()
            now = time.monotonic()
            if now >= poll.next_poll:
                self._poll(poll, now, staging_done)
            if now >= poll.next_list:
                # A listing that finds nothing new while the counts say tasks finished
                # that were not read: read them all next time (a task whose change the
                # margin did not cover is found then, so completion never hangs on it).
                found = self._list(full=poll.missed)
                poll.missed, poll.last_found = poll.behind and not found, found > 0
                poll.behind = False
                poll.last_list, poll.next_list = now, now + LIST_AT_LEAST_EVERY
            remaining = run.session.deadline - time.monotonic()
            if remaining <= 0:
                raise RunTimeoutError(
                    f"job {run.job_id} did not finish within the session timeout "
                    f"({self.read}/{self.total} done); raise AzureConfig(session_timeout=...) "
                    "or add nodes"
                )
            wake = min(poll.next_poll, poll.next_list) - time.monotonic()
            self._sleep(max(0.0, min(wake, remaining)))  # downloads are reported as they land

    def _ended(self, produced: Future[None] | None) -> bool | None:
        """True once every task is accounted for and downloaded, False when the run is
        cancelled, None while it goes on; raises what staging raised."""
        run = self.run
        if produced is not None and produced.done():
            error = produced.exception()
            if isinstance(error, StagingCancelled):
                return False
            if error is not None:
                raise error
        if run.cancel.is_set():
            return False
        if (produced is None or produced.done()) and not self.unread:
            while self.pending:  # the last downloads
                self._sleep(1.0)
                if run.cancel.is_set():
                    return False
            return True
        return None

    def _poll(self, poll: _PollState, now: float, staging_done: bool) -> None:
        """Read the task counts (and, when they stall, the pool's health); plan the next
        listing and poll."""
        run, config = self.run, self.run.config
        batch, job_id = run.session.batch, run.job_id
        counts = job_counts(batch, job_id, config)
        moved = counts != poll.last
        tasks = self.total + run.split.pieces
        if moved:
            log_counts(job_id, counts, tasks)
            if not run.split.pieces:  # else tasks are not files: the bar moves by results
                run.progress.counts(counts.completed, counts.failed)
        if counts.active == 0 and not staging_done and self.hurry is not None:
            self.hurry()  # no task waits for a node: add the staged ones now
        if counts.completed > self.read + len(self.pieces_seen):
            # the counts know of finished tasks not read yet: list, but never twice
            # within the margin, so that each task is read at most about twice
            # (a listing that found nothing has nothing to read again, and the
            # listing of the last tasks is read once: no gap then)
            last_ones = staging_done and counts.completed >= tasks
            gap = LISTING_GAP if poll.last_found and not last_ones else 0.0
            poll.next_list = min(poll.next_list, poll.last_list + gap)
            poll.behind = True
        if poll.pool_id is None:
            poll.pool_id = self.pool_id = auto_pool_id(batch, job_id, config)
        unfinished = counts.completed < tasks  # (an auto-pool goes with its job)
        stalled = poll.last is None or not moved
        # The pool's health (two requests) on the first poll and, while the counts stand
        # still, at most once per longest poll interval: a broken pool is still found
        # within it, and a busy job whose counts lag a poll or two costs no extra reads.
        if poll.pool_id is not None and unfinished and stalled and now >= poll.next_pool_check:
            check_pool(batch, poll.pool_id, config)
            poll.next_pool_check = now + config.poll_interval_max
        poll.last = counts
        poll.interval = config.poll_interval if moved else min(config.poll_interval_max, poll.interval * 1.5)
        poll.next_poll = now + poll.interval


@attrs.define(kw_only=True)
class _PollState:
    """Where a collector's watch stands: the last counts, when to poll and list next."""

    pool_id: str | None
    interval: float
    last: Counts | None = None
    next_poll: float = attrs.field(factory=time.monotonic)
    next_list: float = attrs.field(factory=time.monotonic)
    last_list: float = attrs.field(factory=lambda: time.monotonic() - LIST_AT_LEAST_EVERY)
    #: The counts know of finished tasks the listings have not read.
    behind: bool = False
    #: The last listing found nothing new although the counts were ahead: list all next.
    missed: bool = False
    last_found: bool = False
    #: Not before this is the pool read again (see ``_Collector._poll``).
    next_pool_check: float = float("-inf")
