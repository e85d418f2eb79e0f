"""Attaching to a job whose submitting process is gone (a kernel restart, a crash).

:func:`attach` parses the id it is given (a session id or a job id), picks the
job, reads its manifest (:mod:`batch_transcode._azure.manifest`), checks that the
job still exists and only then hands over to
:func:`~batch_transcode._azure.opened.adopt_session`, which takes over the
crashed session's resources. The run's resume mode
(:meth:`~batch_transcode._azure.run.AzureRun.resume`) then watches and collects.
"""

from __future__ import annotations

import datetime as dt
import logging

from azure.batch import BatchClient

from batch_transcode._azure import names
from batch_transcode._azure._calls import call
from batch_transcode._azure._clients import make_batch_client, make_blob_service_client
from batch_transcode._azure._errors import azure_errors
from batch_transcode._azure.containers import Containers
from batch_transcode._azure.manifest import Manifest
from batch_transcode._azure.opened import OpenSession, adopt_session
from batch_transcode._azure.staging import Staging
from batch_transcode._config import AzureConfig
from batch_transcode._errors import AttachError
from batch_transcode._teardown import Teardown

__all__ = ["attach"]

log = logging.getLogger(__name__)


def _read_manifest(staging: Staging, ident: str, job_id: str) -> Manifest:
    data = staging.read_output_blob(names.manifest_blob(job_id))
    if data is None:
        raise AttachError(
            f"no job {job_id} to attach to: its manifest is not in container "
            f"{staging.containers.output} (a wrong id, a session that finished and removed "
            "its resources, or a session of a batch-transcode version without manifests)",
            ident=ident,
        )
    try:
        return Manifest.from_json(data)
    except ValueError as exc:
        raise AttachError(f"the manifest of job {job_id} cannot be read: {exc}", ident=ident) from exc


def _job_state(config: AzureConfig, batch: BatchClient, job_id: str) -> str | None:
    """The job's state, or None if it does not exist."""
    job = call(
        config.retry,
        f"get job {job_id}",
        lambda: batch.get_job(job_id, select=["id", "state"]),
        missing_ok=True,
        job_id=job_id,
    )
    if job is None:
        return None
    return str(getattr(job.state, "value", job.state))


def _manifest_job_ids(staging: Staging) -> list[str]:
    found = (names.manifest_job_id(n) for n in staging.list_output_blobs(names.MANIFEST_PREFIX))
    return sorted(job_id for job_id in found if job_id is not None)


def _choose_job(
    config: AzureConfig, batch: BatchClient, staging: Staging, ident: str, session_id: str
) -> str:
    """The job of a session given by its id: its only job, else its only unfinished one."""
    job_ids = _manifest_job_ids(staging)
    if not job_ids:
        raise AttachError(
            f"no session {session_id} to attach to: container {staging.containers.output} "
            "holds no job manifest (a wrong id, or the session finished and removed its resources)",
            ident=ident,
        )
    if len(job_ids) == 1:
        return job_ids[0]
    states = {j: _job_state(config, batch, j) for j in job_ids}
    running = [j for j, s in states.items() if s is not None and s != "completed"]
    existing = [j for j, s in states.items() if s is not None]
    candidates = running or existing
    if len(candidates) == 1:
        return candidates[0]
    raise AttachError(
        f"session {session_id} has {len(candidates or job_ids)} jobs ({', '.join(candidates or job_ids)}); "
        "attach to one of them by its job id",
        ident=ident,
        job_ids=candidates or job_ids,
    )


def attach(config: AzureConfig, ident: str, teardown: Teardown) -> tuple[OpenSession, Manifest]:
    """The open session and manifest of the job ``ident`` names, its resources taken over.

    Raises :class:`AttachError` (nothing adopted) when there is no such job.
    """
    parsed = names.parse_id(ident)
    session_id = parsed.session_id
    batch = make_batch_client(config)
    teardown.push("close the Batch client", batch.close)  # runs last: the deletes need it
    with azure_errors("connect to storage"):
        blobs, account_key = make_blob_service_client(config)
    teardown.push("close the storage client", blobs.close)
    # the session's default containers: where its manifests are (reading them needs no SAS)
    session = names.SessionNames(
        session_id=session_id, created_at=dt.datetime.now(dt.UTC), prefix=parsed.prefix
    )
    staging = Staging(
        service=blobs,
        containers=Containers(input=session.input_container, output=session.output_container),
        expiry=dt.datetime.now(dt.UTC),
        account_key=account_key,
    )
    job_id = parsed.job_id or _choose_job(config, batch, staging, ident, session_id)
    manifest = _read_manifest(staging, ident, job_id)
    state = _job_state(config, batch, job_id)
    if state is None:
        raise AttachError(
            f"job {job_id} no longer exists (deleted, or never created because the submitting "
            f"process stopped first); remove what remains with: {names.cleanup_command(session_id)}",
            ident=ident,
        )
    adopted = adopt_session(config, batch, blobs, account_key, manifest, teardown)
    log.info(
        "attached to job %s of session %s (%s, %d file(s)); its resources are removed when "
        "this session closes",
        job_id,
        session_id,
        state,
        len(manifest.files),
    )
    return adopted, manifest
