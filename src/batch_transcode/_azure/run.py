"""One batch of files on an open Azure session: one job.

:meth:`AzureRun.run` uploads the inputs, writes the job manifest, creates the job,
adds the tasks, lets the job end itself when they complete, watches the task
counts, lists the tasks once and downloads the outputs. :meth:`AzureRun.resume`
is the same run picked up by another process (attaching after a crash): the job
and its tasks exist, so it watches and collects.

Every file ends as one :class:`FileResult` with a typed ``status``; a run that is
cancelled starts no new upload, task collection or download, and its job is
deleted.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from azure.core import exceptions as az

from batch_transcode._azure import builders
from batch_transcode._azure._calls import call
from batch_transcode._azure._errors import azure_errors
from batch_transcode._azure.cleanup import delete_job
from batch_transcode._azure.monitor import Counts, TaskOutcome, final_states, wait_for_job
from batch_transcode._azure.opened import OpenSession
from batch_transcode._azure.staging import Download, StagingCancelled
from batch_transcode._azure.submit import submit_tasks
from batch_transcode._errors import AzureError
from batch_transcode._ffmpeg import describe_ffmpeg_failure, stderr_tail
from batch_transcode._naming import WorkItem
from batch_transcode._presets import Preset
from batch_transcode._progress import ProgressSink
from batch_transcode._redact import redact
from batch_transcode._report import FileResult
from batch_transcode._teardown import Teardown

__all__ = ["AzureRun"]

log = logging.getLogger(__name__)


class AzureRun:
    """The files ``items`` of job ``job_id`` on ``session``."""

    def __init__(
        self,
        session: OpenSession,
        job_id: str,
        items: Sequence[WorkItem],
        preset: Preset,
        progress: ProgressSink,
        teardown: Teardown,
        cancel: threading.Event,
    ) -> None:
        self.session = session
        self.config = session.config
        self.job_id = job_id
        self.items = list(items)
        self.preset = preset
        self.progress = progress
        self.teardown = teardown
        self.cancel = cancel

    def _cancelled(self, items: Sequence[WorkItem]) -> list[FileResult]:
        return [FileResult.cancellation(item.source) for item in items]

    # -- a new job -------------------------------------------------------------------------

    def run(self) -> list[FileResult]:
        """Stage, submit, watch and collect; one result per item, in order."""
        staging = self.session.staging
        try:
            with azure_errors("upload the inputs"):
                staged = {s.index: s for s in staging.upload_inputs(self.items, cancel=self.cancel)}
        except StagingCancelled:
            return self._cancelled(self.items)
        if self.cancel.is_set():
            return self._cancelled(self.items)
        with azure_errors("write the job manifest"):
            manifest = self.session.manifest(self.job_id, self.items, self.preset)
            staging.write_output_blob(manifest.blob_name, manifest.to_json())
        self._create_job()
        with azure_errors("prepare the tasks"):
            out_url = staging.output_container_sas_url()
            tasks = [
                builders.task_create_options(
                    config=self.config,
                    setup=self.session.setup,
                    job_id=self.job_id,
                    index=item.index,
                    source_name=item.relative_source,
                    input_url=staged[item.index].sas_url,
                    output_container_url=out_url,
                    output_blob_name=staging.output_blob_name(item),
                    preset=self.preset,
                )
                for item in self.items
            ]
        submit_tasks(self.session.batch, self.job_id, tasks, self.config.retry, cancel=self.cancel)
        if self.cancel.is_set():
            self._stop_job()
            return self._cancelled(self.items)
        self._terminate_when_done()
        return self._watch_and_collect(self.items)

    def _create_job(self) -> None:
        session, job_id = self.session, self.job_id
        job = builders.job_create_options(
            job_id=job_id,
            names=session.names,
            info=builders.pool_info(self.config, session.names, session.setup),
            max_wall_clock=session.deadline_utc - dt.datetime.now(dt.UTC),
        )
        self.teardown.push(f"job {job_id}", lambda: delete_job(session.batch, job_id, self.config.retry))
        call(
            self.config.retry,
            f"create job {job_id}",
            lambda: session.batch.create_job(job),
            created="JobExists",
            job_id=job_id,
        )
        log.info("job %s created with %d task(s) to add", job_id, len(self.items))

    # -- a job another process submitted ---------------------------------------------------

    def resume(self) -> list[FileResult]:
        """Watch the existing job and collect; files whose task was never added fail."""
        batch, job_id = self.session.batch, self.job_id

        def listing() -> set[str]:
            return {t.id or "" for t in batch.list_tasks(job_id, select=["id"])}

        present = call(self.config.retry, f"list tasks of job {job_id}", listing, job_id=job_id)
        added = [i for i in self.items if builders.task_id(i.index) in present]
        missing = len(self.items) - len(added)
        if missing:
            log.warning(
                "job %s: %d of %d file(s) were never added to the job (the submitting process "
                "stopped first); convert them again",
                job_id,
                missing,
                len(self.items),
            )
        self._terminate_when_done()  # the submitting process may have stopped before it did
        collected = dict(zip((i.index for i in added), self._watch_and_collect(added), strict=True))
        out: list[FileResult] = []
        for item in self.items:
            result = collected.get(item.index)
            if result is None:
                result = FileResult.failure(
                    item.source,
                    "not converted: the file was never added to the job before the submitting "
                    "process stopped; convert it again",
                    task_id=builders.task_id(item.index),
                )
                self.progress.finished(result)
            out.append(result)
        return out

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

    def _watch_and_collect(self, items: list[WorkItem]) -> list[FileResult]:
        """Wait for the job's tasks (all of ``items``), then list them once and download
        the outputs."""

        def on_progress(counts: Counts) -> None:
            # The bar follows the task counts; per-file events follow the final listing.
            self.progress.counts(counts.completed, counts.failed)

        finished = wait_for_job(
            self.session.batch,
            job_id=self.job_id,
            pool_id=self.session.pool_id,
            total=len(items),
            config=self.config,
            deadline=self.session.deadline,
            cancel=self.cancel,
            on_progress=on_progress,
        )
        if not finished:
            self._stop_job()
            return self._cancelled(items)
        outcomes = final_states(self.session.batch, self.job_id, self.config)
        return self._collect(items, outcomes)

    def _stderr(self, task_id: str) -> str:
        """A failed task's stderr: uploaded to the output container on failure, else read
        through the task file API."""
        blob = builders.diagnostics_path(self.job_id, task_id, "stderr.txt")
        try:
            data = self.session.staging.read_output_blob(blob)
            if data is not None:
                return data.decode("utf-8", "replace")
        except az.AzureError as exc:
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
        if outcome.state != "completed":
            return f"the task did not complete (state {outcome.state})"
        if outcome.exit_code not in (None, 0):
            text = describe_ffmpeg_failure(outcome.exit_code, self._stderr(outcome.task_id), self.preset)
            return f"{text}\n(task {outcome.task_id}, exit code {outcome.exit_code})"
        why = (
            f"{outcome.failure_code}: {redact(outcome.failure_message or '')}"
            if outcome.failure_code
            else "failed"
        )
        tail = stderr_tail(self._stderr(outcome.task_id))
        lines = [f"the task failed ({why})", tail, f"(task {outcome.task_id})"]
        return "\n".join(line for line in lines if line)

    def _collect(self, items: list[WorkItem], outcomes: dict[str, TaskOutcome]) -> list[FileResult]:
        by_task = {item.index: outcomes.get(builders.task_id(item.index)) for item in items}
        ok = [item for item in items if (o := by_task[item.index]) is not None and o.succeeded]
        with azure_errors("download the outputs"):
            downloads = self.session.staging.download_outputs(ok, cancel=self.cancel) if ok else {}
        failed = [item for item in items if item.index not in downloads]
        with ThreadPoolExecutor(max_workers=8, thread_name_prefix="bt-diag") as pool:
            texts = dict(
                zip(
                    [i.index for i in failed],
                    pool.map(lambda i: self._failure_text(by_task[i.index]), failed),
                    strict=True,
                )
            )
        results: list[FileResult] = []
        for item in items:
            outcome = by_task[item.index]
            seconds = outcome.seconds if outcome is not None else None
            tid = builders.task_id(item.index)
            download: Download | None = downloads.get(item.index)
            if download is None:
                result = FileResult.failure(item.source, texts[item.index], seconds=seconds, task_id=tid)
            elif download.status == "cancelled":
                result = FileResult.cancellation(
                    item.source, "converted, but cancelled before its output was downloaded", task_id=tid
                )
            elif download.status == "failed":
                result = FileResult.failure(
                    item.source,
                    f"converted, but the output could not be downloaded: {download.error}",
                    seconds=seconds,
                    task_id=tid,
                )
            else:
                result = FileResult.converted(item.source, item.output, seconds=seconds, task_id=tid)
            self.progress.finished(result)
            results.append(result)
        done = sum(r.ok for r in results)
        log.info("job %s: %d/%d converted, %d failed", self.job_id, done, len(results), len(results) - done)
        return results
