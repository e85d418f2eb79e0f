"""Attaching to a job whose submitting process is gone (a kernel restart, a crash).

:func:`adopt` finds the job from a session id or a job id, reads its manifest
(:mod:`batch_transcode._azure.manifest`), checks that the job still exists and
only then takes over the crashed session's resources: their delete steps go on
the attaching session's teardown stack in the order the original session pushed
them (containers, pool, job), so they unwind job first. :func:`resume` watches
the job and collects its results exactly as a fresh run does.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from azure.core import exceptions as az

from batch_transcode import _retry
from batch_transcode._azure import builders
from batch_transcode._azure._clients import make_batch_client
from batch_transcode._azure._errors import azure_errors, translate
from batch_transcode._azure.backend import AzureBackend, _AzureRun
from batch_transcode._azure.cleanup import cleanup_command, delete_job, delete_pool
from batch_transcode._azure.manifest import MANIFEST_PREFIX, Manifest, manifest_blob_name
from batch_transcode._azure.staging import Staging, make_blob_service_client
from batch_transcode._errors import AttachError
from batch_transcode._naming import WorkItem
from batch_transcode._presets import Preset
from batch_transcode._progress import ProgressSink
from batch_transcode._report import FileResult
from batch_transcode._teardown import Teardown

__all__ = ["adopt", "parse_id", "resume"]

log = logging.getLogger(__name__)

#: ``{prefix}-{yyyymmddThhmm}-{8 hex}``, optionally followed by ``-job`` or ``-jobN``.
_ID = re.compile(
    r"^(?P<session>(?P<prefix>[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)-\d{8}t\d{4}-[0-9a-f]{8})"
    r"(?P<job>-job(?:[2-9]|[1-9]\d+)?)?$"
)


def parse_id(ident: str) -> tuple[str, str, str | None]:
    """``(prefix, session_id, job_id or None)`` of a session or job id."""
    m = _ID.match(ident.strip().lower())
    if m is None:
        raise AttachError(
            f"{ident!r} is not a batch-transcode session or job id; they look like "
            "'bt-20261101t1200-1a2b3c4d' (session) or 'bt-20261101t1200-1a2b3c4d-job' (job). "
            "The id is in the log of the run ('Azure session ...: opening') and in the "
            "names of its pool and containers",
            ident=ident,
        )
    job = m.group("session") + m.group("job") if m.group("job") else None
    return m.group("prefix"), m.group("session"), job


def _read_manifest(staging: Any, ident: str, job_id: str) -> Manifest:
    try:
        data = staging.read_output_blob(manifest_blob_name(job_id))
    except az.ResourceNotFoundError:
        data = None
    if data is None:
        raise AttachError(
            f"no job {job_id} to attach to: its manifest is not in container "
            f"{staging.output_container_name} (a wrong id, a session that finished and removed "
            "its resources, or a session of a batch-transcode version without manifests)",
            ident=ident,
        )
    try:
        return Manifest.from_json(bytes(data))
    except ValueError as exc:
        raise AttachError(f"the manifest of job {job_id} cannot be read: {exc}", ident=ident) from exc


def _job_state(backend: AzureBackend, job_id: str) -> str | None:
    """The job's state, or None if it does not exist."""
    try:
        job = _retry.call(
            backend.config.retry,
            f"get job {job_id}",
            lambda: backend.batch.get_job(job_id, select=["id", "state"]),
        )
    except az.ResourceNotFoundError:
        return None
    except az.AzureError as exc:
        raise translate(exc, f"get job {job_id}") from exc
    state = job.state
    return str(getattr(state, "value", state))


def _choose_job(backend: AzureBackend, staging: Any, ident: str, session_id: str) -> str:
    """The job of a session given by its id: its only job, else its only unfinished one."""
    try:
        names = staging.list_output_blobs(MANIFEST_PREFIX)
    except az.ResourceNotFoundError:
        names = []
    job_ids: list[str] = sorted(
        str(n)[len(MANIFEST_PREFIX) : -len(".json")] for n in names if str(n).endswith(".json")
    )
    if not job_ids:
        raise AttachError(
            f"no session {session_id} to attach to: container {staging.output_container_name} "
            "holds no job manifest (a wrong id, or the session finished and removed its resources)",
            ident=ident,
        )
    if len(job_ids) == 1:
        return job_ids[0]
    states = {j: _job_state(backend, j) for j in job_ids}
    running: list[str] = [j for j, s in states.items() if s is not None and s != "completed"]
    existing: list[str] = [j for j, s in states.items() if s is not None]
    candidates = running or existing
    if len(candidates) == 1:
        return candidates[0]
    raise AttachError(
        f"session {session_id} has {len(candidates or job_ids)} jobs ({', '.join(candidates or job_ids)}); "
        "attach to one of them by its job id",
        ident=ident,
        job_ids=candidates or job_ids,
    )


def _container_deleter(staging: Any, name: str) -> Callable[[], None]:
    def delete() -> None:
        staging._delete_container(name)

    return delete


def adopt(backend: AzureBackend, ident: str, teardown: Teardown) -> Manifest:
    """Point ``backend`` at the job ``ident`` names and take over its session's resources.

    Raises :class:`AttachError` (nothing adopted) when there is no such job.
    """
    config = backend.config
    prefix, session_id, job_id = parse_id(ident)
    backend._batch = make_batch_client(config)
    with azure_errors("connect to storage"):
        blobs, account_key = make_blob_service_client(config)
    staging = Staging(
        blobs,
        session_id=session_id,
        prefix=prefix,
        expiry=dt.datetime.now(dt.UTC) + dt.timedelta(seconds=config.session_timeout),
        concurrency=config.upload_concurrency,
        download_concurrency=config.download_concurrency,
        account_key=account_key,
    )
    with azure_errors(f"read the manifest of {ident}"):
        if job_id is None:
            job_id = _choose_job(backend, staging, ident, session_id)
        manifest = _read_manifest(staging, ident, job_id)
    state = _job_state(backend, job_id)
    if state is None:
        raise AttachError(
            f"job {job_id} no longer exists (deleted, or never created because the submitting "
            f"process stopped first); remove what remains with: {cleanup_command(session_id)}",
            ident=ident,
        )
    staging.input_container_name = manifest.input_container
    staging.persistent_input = not manifest.delete_input_container
    staging.output_container_name = manifest.output_container
    staging.expiry = max(manifest.deadline, dt.datetime.now(dt.UTC) + dt.timedelta(hours=1))

    backend.session_id = session_id
    backend.names = builders.SessionNames(session_id=session_id, created_at=manifest.created_at)
    backend._staging = staging
    backend.pool_id = manifest.pool_id
    backend._deadline_utc = manifest.deadline
    remaining = (manifest.deadline - dt.datetime.now(dt.UTC)).total_seconds()
    backend._deadline = time.monotonic() + remaining
    backend.job_ids.append(job_id)
    teardown.cleanup_command = cleanup_command(session_id)

    # The original session's order (containers, pool, job): unwound job first.
    retry = config.retry
    for name, delete in (
        (manifest.input_container, manifest.delete_input_container),
        (manifest.output_container, manifest.delete_output_container),
    ):
        if delete:
            teardown.push(f"container {name}", _container_deleter(staging, name))
    if manifest.delete_pool and manifest.pool_id is not None:
        pool_id = manifest.pool_id
        teardown.push(f"pool {pool_id}", lambda: delete_pool(backend.batch, pool_id, retry))
    adopted_job = job_id
    teardown.push(f"job {adopted_job}", lambda: delete_job(backend.batch, adopted_job, retry))
    log.info(
        "attached to job %s of session %s (%s, %d file(s)); its resources are removed when "
        "this session closes",
        job_id,
        session_id,
        state,
        len(manifest.files),
    )
    return manifest


class _ResumedRun(_AzureRun):
    """A job created by another process: watch it and collect its results."""

    def resume(self) -> list[FileResult]:
        b = self.b

        def listing() -> set[str]:
            return {t.id or "" for t in b.batch.list_tasks(self.job_id, select=["id"])}

        try:
            present = _retry.call(self.config.retry, f"list tasks of job {self.job_id}", listing)
        except az.AzureError as exc:
            raise translate(exc, f"list tasks of job {self.job_id}") from exc
        everything = self.items
        self.items = [i for i in everything if builders.task_id(i.index) in present]
        missing = len(everything) - len(self.items)
        if missing:
            log.warning(
                "job %s: %d of %d file(s) were never added to the job (the submitting process "
                "stopped first); convert them again",
                self.job_id,
                missing,
                len(everything),
            )
        self._terminate_when_done()  # the submitting process may have stopped before it did
        results = {id(i): r for i, r in zip(self.items, self._watch_and_collect(), strict=True)}
        out: list[FileResult] = []
        for item in everything:
            result = results.get(id(item))
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


def resume(
    backend: AzureBackend,
    job_id: str,
    items: Sequence[WorkItem],
    preset: Preset,
    progress: ProgressSink,
    teardown: Teardown,
    cancel: threading.Event,
) -> list[FileResult]:
    """Watch the adopted job ``job_id`` and return one result per item, in order."""
    return _ResumedRun(backend, job_id, list(items), preset, progress, teardown, cancel).resume()
