"""The Azure Batch backend: provision, stage, submit, monitor, collect, tear down.

``open``: clients; a cheap authenticated read (a wrong key fails here, before
anything exists); the session's containers; the staged ffmpeg; the session
pool (unless ``pool_id`` or ``auto_pool``), whose nodes allocate while the
inputs upload. ``run``: upload inputs, create the job, add the tasks, watch
the task counts, list the tasks once, download the outputs. Every resource is
pushed on the teardown stack *before* the request that creates it, so that a
request whose answer was lost still gets cleaned up.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from azure.batch import BatchClient
from azure.core import exceptions as az

from batch_transcode import _retry
from batch_transcode._azure import builders
from batch_transcode._azure._clients import make_batch_client
from batch_transcode._azure._errors import azure_errors, is_code, redact, translate
from batch_transcode._azure.cleanup import cleanup_command, delete_job, delete_pool
from batch_transcode._azure.manifest import manifest_for, write_manifest
from batch_transcode._azure.monitor import Counts, TaskOutcome, final_states, wait_for_job
from batch_transcode._azure.staging import CANCELLED, Staging, StagingCancelled, make_blob_service_client
from batch_transcode._config import AzureConfig, StagedFFmpeg
from batch_transcode._errors import AzureError, ConfigError, SessionStateError
from batch_transcode._ffmpeg import describe_ffmpeg_failure, stderr_tail
from batch_transcode._naming import WorkItem
from batch_transcode._presets import Preset
from batch_transcode._progress import ProgressSink
from batch_transcode._report import FileResult
from batch_transcode._teardown import Teardown

__all__ = ["AzureBackend"]

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Blob name of the staged ffmpeg binary (StagedFFmpeg) in the input container.
STAGED_FFMPEG_BLOB = ".bt-tools/ffmpeg"


class AzureBackend:
    """Runs each file as one Azure Batch task. See the module docstring for the flow."""

    name = "azure"

    def __init__(self, config: AzureConfig) -> None:
        self.config = config
        self.session_id: str | None = None
        self.names: builders.SessionNames | None = None
        #: The pool tasks run on: the session pool, the user's pool, or None for an auto-pool.
        self.pool_id: str | None = None
        self.job_ids: list[str] = []
        self._batch: BatchClient | None = None
        self._staging: Staging | None = None
        self._setup: builders.FFmpegSetup | None = None
        self._deadline = 0.0
        self._deadline_utc = dt.datetime.now(dt.UTC)
        self._runs = 0
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<AzureBackend session={self.session_id} pool={self.pool_id}>"

    @property
    def staging(self) -> Staging:
        if self._staging is None:
            raise SessionStateError("the Azure backend is not open")
        return self._staging

    @property
    def session_names(self) -> builders.SessionNames:
        if self.names is None:
            raise SessionStateError("the Azure backend is not open")
        return self.names

    @property
    def batch(self) -> BatchClient:
        if self._batch is None:
            raise SessionStateError("the Azure backend is not open")
        return self._batch

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        try:
            return _retry.call(self.config.retry, what, fn)
        except az.AzureError as exc:
            raise translate(exc, what) from exc

    # -- open ----------------------------------------------------------------------------

    def open(self, teardown: Teardown) -> None:

        config = self.config
        now = dt.datetime.now(dt.UTC)
        self.session_id = builders.new_session_id(config.resource_prefix, now)
        self.names = builders.SessionNames(session_id=self.session_id, created_at=now)
        self._deadline = time.monotonic() + config.session_timeout
        self._deadline_utc = now + dt.timedelta(seconds=config.session_timeout)
        teardown.cleanup_command = cleanup_command(self.session_id)
        log.info("Azure session %s: opening (Batch %s)", self.session_id, config.batch_endpoint)

        if (
            config.pool_id is None
            and isinstance(config.ffmpeg, StagedFFmpeg)
            and not config.ffmpeg.binary.is_file()
        ):
            raise ConfigError(
                f"StagedFFmpeg binary {str(config.ffmpeg.binary)!r} does not exist; "
                "pass the path of a static Linux x86-64 ffmpeg"
            )
        self._batch = make_batch_client(config)
        self._check_batch_access()
        if config.pool_id is not None:
            self._check_user_pool(config.pool_id)
        with azure_errors("connect to storage"):
            blobs, account_key = make_blob_service_client(config)
            self._staging = Staging(
                config,
                blobs,
                account_key=account_key,
                session_id=self.session_id,
                expiry=self._deadline_utc,
            )
        with azure_errors("create the storage containers"):
            self._staging.create_containers(teardown)

        if config.pool_id is not None:
            self.pool_id = config.pool_id
            return
        staged_url = None
        if isinstance(config.ffmpeg, StagedFFmpeg):
            with azure_errors("upload the ffmpeg binary"):
                staged_url = self._staging.upload_file(config.ffmpeg.binary, STAGED_FFMPEG_BLOB)
        self._setup = builders.ffmpeg_setup(config.ffmpeg, staged_url)
        if not config.auto_pool:
            self._create_session_pool(teardown)

    def _check_batch_access(self) -> None:
        """A cheap authenticated read: a wrong key or a missing role fails here, before
        anything is created."""

        def probe() -> None:
            for _ in self.batch.list_pools(max_results=1, select=["id"]):
                break

        self._call("list pools (checking the Batch credentials)", probe)

    def _check_user_pool(self, pool_id: str) -> None:
        try:
            self._call(f"get pool {pool_id}", lambda: self.batch.get_pool(pool_id, select=["id", "state"]))
        except AzureError as exc:
            if exc.code in ("PoolNotFound",) or "404" in str(exc):
                raise ConfigError(
                    f"pool {pool_id!r} does not exist in this Batch account; "
                    "create it, or leave AzureConfig(pool_id=None) to get a session pool"
                ) from exc
            raise

    def _create_session_pool(self, teardown: Teardown) -> None:
        names = self.session_names
        if self._setup is None:
            raise SessionStateError("ffmpeg provisioning was not prepared")
        pool = builders.pool_create_options(self.config, names, self._setup)
        pool_id = names.pool_id
        if self.config.keep_pool:
            log.info("keep_pool=True: pool %s will be kept when the session closes", pool_id)
        else:
            teardown.push(f"pool {pool_id}", lambda: delete_pool(self.batch, pool_id, self.config.retry))
        self._create(f"create pool {pool_id}", lambda: self.batch.create_pool(pool), "PoolExists", pool_id)
        self.pool_id = pool_id
        log.info(
            "pool %s created (%s, %s)",
            pool_id,
            self.config.vm_size,
            "autoscale"
            if self.config.autoscale
            else f"{self.config.dedicated_nodes} dedicated + {self.config.spot_nodes} Spot nodes",
        )

    def _create(self, what: str, fn: Callable[[], None], exists_code: str, resource_id: str) -> None:
        """Create under the retry policy; 'already exists' is success when the resource is
        ours (a retried POST whose first answer was lost): ids embed the session id."""
        attempts = 0

        def once() -> None:
            nonlocal attempts
            attempts += 1
            try:
                fn()
            except az.ResourceExistsError as exc:
                if is_code(exc, exists_code) and attempts > 1 and (self.session_id or "?") in resource_id:
                    log.info("%s: it already exists from an earlier attempt", what)
                    return
                raise

        try:
            _retry.call(self.config.retry, what, once)
        except az.AzureError as exc:
            raise translate(exc, what) from exc

    # -- run -----------------------------------------------------------------------------

    def run(
        self,
        items: Sequence[WorkItem],
        preset: Preset,
        progress: ProgressSink,
        teardown: Teardown,
        cancel: threading.Event,
    ) -> list[FileResult]:
        if self.names is None:
            raise SessionStateError("the Azure backend is not open")
        with self._lock:
            self._runs += 1
            job_id = self.names.job_id(self._runs)
        return _AzureRun(self, job_id, list(items), preset, progress, teardown, cancel).run()


class _AzureRun:
    """One batch of files: one job."""

    def __init__(
        self,
        backend: AzureBackend,
        job_id: str,
        items: list[WorkItem],
        preset: Preset,
        progress: ProgressSink,
        teardown: Teardown,
        cancel: threading.Event,
    ) -> None:
        self.b = backend
        self.config = backend.config
        self.job_id = job_id
        self.items = items
        self.preset = preset
        self.progress = progress
        self.teardown = teardown
        self.cancel = cancel

    def _cancelled(self) -> list[FileResult]:
        return [FileResult.failure(item.source, "cancelled") for item in self.items]

    def run(self) -> list[FileResult]:
        b = self.b
        staging = b.staging
        try:
            with azure_errors("upload the inputs"):
                staged = {s.index: s for s in staging.upload_inputs(self.items, cancel=self.cancel)}
        except StagingCancelled:
            return self._cancelled()
        if self.cancel.is_set():
            return self._cancelled()
        with azure_errors("write the job manifest"):
            write_manifest(staging, manifest_for(b, self.job_id, self.items, self.preset))
        self._create_job()
        with azure_errors("prepare the tasks"):
            out_url = staging.output_container_sas_url()
            tasks = [
                builders.task_create_options(
                    config=self.config,
                    setup=self._setup(),
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
        from batch_transcode._azure.submit import submit_tasks

        submit_tasks(b.batch, self.job_id, tasks, self.config.retry, cancel=self.cancel)
        if self.cancel.is_set():
            self._stop_job()
            return self._cancelled()
        self._terminate_when_done()
        return self._watch_and_collect()

    def _watch_and_collect(self) -> list[FileResult]:
        """Wait for the job's tasks (all of ``self.items``), then list them once and
        download the outputs."""
        b = self.b

        def on_progress(counts: Counts) -> None:
            # The bar follows the task counts; per-file events follow the final listing.
            self.progress.counts(counts.completed, counts.failed)

        finished = wait_for_job(
            b.batch,
            job_id=self.job_id,
            pool_id=b.pool_id,
            total=len(self.items),
            config=self.config,
            deadline=b._deadline,
            cancel=self.cancel,
            on_progress=on_progress,
        )
        if not finished:
            self._stop_job()
            return self._cancelled()
        outcomes = final_states(b.batch, self.job_id, self.config)
        return self._collect(outcomes)

    def _setup(self) -> builders.FFmpegSetup:
        setup = self.b._setup
        if setup is None:  # an existing pool provisioned ffmpeg the configured way already
            if isinstance(self.config.ffmpeg, StagedFFmpeg):
                setup = builders.FFmpegSetup(command=builders.STAGED_FFMPEG_REF)
            else:
                setup = builders.ffmpeg_setup(self.config.ffmpeg, None)
            self.b._setup = setup
        return setup

    def _create_job(self) -> None:
        b = self.b
        names = b.session_names
        now = dt.datetime.now(dt.UTC)
        job = builders.job_create_options(
            job_id=self.job_id,
            names=names,
            info=builders.pool_info(self.config, names, b._setup),
            max_wall_clock=b._deadline_utc - now,
        )
        job_id = self.job_id
        self.teardown.push(f"job {job_id}", lambda: delete_job(b.batch, job_id, self.config.retry))
        b._create(f"create job {job_id}", lambda: b.batch.create_job(job), "JobExists", job_id)
        b.job_ids.append(job_id)
        log.info("job %s created with %d task(s) to add", job_id, len(self.items))

    def _terminate_when_done(self) -> None:
        """All tasks are in: let the job end itself when they complete."""
        try:
            self.b._call(
                f"update job {self.job_id}",
                lambda: self.b.batch.update_job(self.job_id, builders.job_terminate_when_done()),
            )
        except AzureError as exc:  # the job still ends: teardown, or its max wall clock
            log.warning("could not set job %s to terminate when its tasks complete: %s", self.job_id, exc)

    def _stop_job(self) -> None:
        try:
            delete_job(self.b.batch, self.job_id, self.config.retry, wait=0)
        except AzureError as exc:
            log.warning("could not delete job %s: %s", self.job_id, exc)

    # -- results ---------------------------------------------------------------------------

    def _stderr(self, task_id: str) -> str:
        """A failed task's stderr: uploaded to the output container on failure, else read
        through the task file API."""
        staging = self.b.staging
        blob = builders.diagnostics_path(self.job_id, task_id, "stderr.txt")
        reader = getattr(staging, "read_output_blob", None)
        if reader is not None:
            try:
                data = reader(blob)
                if data is not None:
                    return bytes(data).decode("utf-8", "replace")
            except az.AzureError as exc:
                log.debug("stderr of task %s not in the output container: %s", task_id, exc)
        try:
            return b"".join(self.b.batch.download_task_file(self.job_id, task_id, "stderr.txt")).decode(
                "utf-8", "replace"
            )
        except az.AzureError as exc:
            log.debug("stderr of task %s could not be read: %s", task_id, exc)
            return ""

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

    def _collect(self, outcomes: dict[str, TaskOutcome]) -> list[FileResult]:
        staging = self.b.staging
        by_task = {item.index: outcomes.get(builders.task_id(item.index)) for item in self.items}
        ok = [item for item in self.items if (o := by_task[item.index]) is not None and o.succeeded]
        with azure_errors("download the outputs"):
            download_errors = staging.download_outputs(ok, cancel=self.cancel) if ok else {}
        failed = [item for item in self.items if item not in ok]
        with ThreadPoolExecutor(max_workers=8, thread_name_prefix="bt-diag") as pool:
            texts = dict(
                zip(
                    [i.index for i in failed],
                    pool.map(lambda i: self._failure_text(by_task[i.index]), failed),
                    strict=True,
                )
            )
        results: list[FileResult] = []
        for item in self.items:
            outcome = by_task[item.index]
            seconds = outcome.seconds if outcome is not None else None
            tid = builders.task_id(item.index)
            if item.index in texts:
                result = FileResult.failure(item.source, texts[item.index], seconds=seconds, task_id=tid)
            elif download_errors.get(item.index) == CANCELLED:
                result = FileResult.failure(
                    item.source, "converted, but cancelled before its output was downloaded", task_id=tid
                )
            elif download_errors.get(item.index):
                result = FileResult.failure(
                    item.source,
                    f"converted, but the output could not be downloaded: {download_errors[item.index]}",
                    seconds=seconds,
                    task_id=tid,
                )
            else:
                result = FileResult(
                    source=item.source, output=item.output, ok=True, seconds=seconds, task_id=tid
                )
            self.progress.finished(result)
            results.append(result)
        done = sum(r.ok for r in results)
        log.info("job %s: %d/%d converted, %d failed", self.job_id, done, len(results), len(results) - done)
        return results
