"""An open Azure session: one frozen value, made by :func:`open_session` or :func:`adopt_session`.

:func:`open_session` provisions: the Batch client; a cheap authenticated read (a
wrong key fails here, before anything exists); the image check (an image or node
agent the account does not support fails here too, see
:mod:`~batch_transcode._azure.preflight`); the session's containers; the staged
ffmpeg; the session pool (unless ``pool_id`` or ``auto_pool``), whose nodes
allocate while the inputs upload. Every resource's delete step is pushed
on the teardown stack *before* the request that creates it, so a request whose
answer was lost still gets cleaned up.

:func:`adopt_session` makes the same value for a session another process opened
(attaching after a crash), from that session's job :class:`Manifest`, and takes
over its resources in the order the original session pushed them.

Runs (:mod:`batch_transcode._azure.run`) take the value; nothing writes to it.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Sequence

import attrs
from azure.batch import BatchClient
from azure.storage.blob import BlobServiceClient

from batch_transcode._azure import builders
from batch_transcode._azure._calls import call
from batch_transcode._azure._clients import make_batch_client, make_blob_service_client
from batch_transcode._azure._errors import azure_errors
from batch_transcode._azure.cleanup import delete_job, delete_pool
from batch_transcode._azure.containers import Containers, create_containers, own_containers
from batch_transcode._azure.manifest import Manifest, ManifestFile
from batch_transcode._azure.names import STAGED_FFMPEG_BLOB, SessionNames, cleanup_command
from batch_transcode._azure.preflight import check_image_support, spot_note
from batch_transcode._azure.staging import Staging, UploadLedger
from batch_transcode._config import AzureConfig, StagedFFmpeg
from batch_transcode._errors import ConfigError
from batch_transcode._naming import WorkItem
from batch_transcode._presets import Preset
from batch_transcode._quality import Metric
from batch_transcode._teardown import Teardown

__all__ = ["OpenSession", "adopt_session", "open_session"]

log = logging.getLogger(__name__)


@attrs.define(frozen=True, kw_only=True)
class OpenSession:
    """What an open Azure session is: its names, deadlines, pool, ffmpeg set-up and clients."""

    config: AzureConfig
    names: SessionNames
    #: When the session must be done: ``time.monotonic()`` seconds, and the same instant in UTC
    #: (jobs carry it as their max wall-clock time).
    deadline: float
    deadline_utc: dt.datetime
    #: The pool tasks run on: the session pool, the user's pool, or None for an auto-pool.
    pool_id: str | None
    #: Whether the session created that pool and removes it when it closes.
    owns_pool: bool
    setup: builders.FFmpegSetup
    batch: BatchClient = attrs.field(repr=False)
    staging: Staging

    @property
    def session_id(self) -> str:
        return self.names.session_id

    def manifest(
        self,
        job_id: str,
        items: Sequence[WorkItem],
        presets: Sequence[Preset],
        quality: Sequence[Metric] = (),
        segment_seconds: float | None = None,
    ) -> Manifest:
        """The manifest of a job this session is about to create."""
        containers = self.staging.containers
        return Manifest(
            session_id=self.session_id,
            job_id=job_id,
            created_at=self.names.created_at,
            deadline=self.deadline_utc,
            pool_id=self.pool_id,
            delete_pool=self.owns_pool,
            input_container=containers.input,
            delete_input_container=not containers.persistent_input,
            output_container=containers.output,
            delete_output_container=not containers.keep_outputs,
            presets=tuple(presets),
            quality=tuple(quality),
            segment_seconds=segment_seconds,
            files=tuple(
                ManifestFile(
                    index=i.index,
                    source=str(i.source),
                    relative_source=i.relative_source,
                    relative_outputs=i.relative_outputs,
                )
                for i in items
            ),
        )


def _existing_pool_setup(config: AzureConfig) -> builders.FFmpegSetup:
    """How tasks find ffmpeg on a pool this session did not provision (the user's, or an
    adopted one): the configured way, already in place."""
    if isinstance(config.ffmpeg, StagedFFmpeg):
        return builders.FFmpegSetup(command=builders.STAGED_FFMPEG_REF)
    return builders.ffmpeg_setup(config.ffmpeg, None)


def open_session(config: AzureConfig, teardown: Teardown, ledger: UploadLedger) -> OpenSession:
    """Provision a new session (see the module docstring)."""
    names = SessionNames.new(config.resource_prefix)
    deadline = time.monotonic() + config.session_timeout
    deadline_utc = names.created_at + dt.timedelta(seconds=config.session_timeout)
    teardown.cleanup_command = cleanup_command(names.session_id)
    log.info("Azure session %s: opening (Batch %s)", names.session_id, config.batch_endpoint)
    if (
        config.pool_id is None
        and isinstance(config.ffmpeg, StagedFFmpeg)
        and not config.ffmpeg.binary.is_file()
    ):
        raise ConfigError(
            f"StagedFFmpeg binary {str(config.ffmpeg.binary)!r} does not exist; "
            "pass the path of a static Linux x86-64 ffmpeg"
        )
    batch = make_batch_client(config)
    teardown.push("close the Batch client", batch.close)  # runs last: the deletes need it
    _check_batch_access(config, batch)
    if config.pool_id is not None:
        _check_user_pool(config, batch, config.pool_id)
    else:
        # the pool this session makes (or its job's auto pool) must use a supported image
        check_image_support(config, batch)
    staging = _connect_storage(config, names, deadline_utc, teardown)
    pool_id: str | None
    if config.pool_id is not None:
        pool_id, setup = config.pool_id, _existing_pool_setup(config)
    else:
        staged_url = None
        if isinstance(config.ffmpeg, StagedFFmpeg):
            staged_url = staging.upload_file(ledger, config.ffmpeg.binary, STAGED_FFMPEG_BLOB)
        setup = builders.ffmpeg_setup(config.ffmpeg, staged_url)
        pool_id = None if config.auto_pool else create_session_pool(config, batch, names, setup, teardown)
    return OpenSession(
        config=config,
        names=names,
        deadline=deadline,
        deadline_utc=deadline_utc,
        pool_id=pool_id,
        owns_pool=config.pool_id is None and not config.auto_pool and not config.keep_pool,
        setup=setup,
        batch=batch,
        staging=staging,
    )


def _connect_storage(
    config: AzureConfig, names: SessionNames, expiry: dt.datetime, teardown: Teardown
) -> Staging:
    """The storage client (its close step on ``teardown``), the session's containers, and
    the staging over them."""
    with azure_errors("connect to storage"):
        blobs, account_key = make_blob_service_client(config)
    teardown.push("close the storage client", blobs.close)
    containers = Containers.of(config, names)
    create_containers(containers, blobs, names, config.retry, teardown)
    return _staging(config, blobs, containers, expiry, account_key)


def _staging(
    config: AzureConfig,
    blobs: BlobServiceClient,
    containers: Containers,
    expiry: dt.datetime,
    account_key: str | None,
) -> Staging:
    return Staging.connect(
        blobs,
        containers,
        expiry=expiry,
        account_key=account_key,
        node_identity=config.node_identity,
        upload_concurrency=config.upload_concurrency,
        download_concurrency=config.download_concurrency,
    )


def _check_batch_access(config: AzureConfig, batch: BatchClient) -> None:
    """A cheap authenticated read: a wrong key or a missing role fails here, before
    anything is created."""

    def probe() -> None:
        for _ in batch.list_pools(max_results=1, select=["id"]):
            break

    call(config.retry, "list pools (checking the Batch credentials)", probe)


def _check_user_pool(config: AzureConfig, batch: BatchClient, pool_id: str) -> None:
    found = call(
        config.retry,
        f"get pool {pool_id}",
        lambda: batch.get_pool(pool_id, select=["id", "state", "identity"]),
        missing_ok=True,
        pool_id=pool_id,
    )
    if found is None:
        raise ConfigError(
            f"pool {pool_id!r} does not exist in this Batch account; "
            "create it, or leave AzureConfig(pool_id=None) to get a session pool"
        )
    if config.node_identity is not None:
        identities = (found.identity.user_assigned_identities or []) if found.identity else []
        if config.node_identity.lower() not in {(i.resource_id or "").lower() for i in identities}:
            raise ConfigError(
                f"pool {pool_id!r} does not have the user-assigned identity {config.node_identity!r} "
                "(node_identity): its tasks could not reach storage. Add the identity to the pool "
                "(Azure Resource Manager: the pool's identity settings) or pass the identity it has"
            )


def create_session_pool(
    config: AzureConfig,
    batch: BatchClient,
    names: SessionNames,
    setup: builders.FFmpegSetup,
    teardown: Teardown,
) -> str:
    """Create the session pool (its delete step first, unless ``keep_pool``); its id."""
    pool = builders.pool_create_options(config, names, setup)
    pool_id = names.pool_id
    note = spot_note(config)
    if note is not None:
        log.log(
            logging.WARNING if config.dedicated_nodes == 0 else logging.INFO, "pool %s: %s", pool_id, note
        )
    if config.keep_pool:
        log.info("keep_pool=True: pool %s will be kept when the session closes", pool_id)
    else:
        teardown.push(f"pool {pool_id}", lambda: delete_pool(batch, pool_id, config.retry))
    call(
        config.retry,
        f"create pool {pool_id}",
        lambda: batch.create_pool(pool),
        created="PoolExists",
        pool_id=pool_id,
    )
    log.info(
        "pool %s created (%s, %s)",
        pool_id,
        config.vm_size,
        "autoscale"
        if config.autoscale
        else f"{config.dedicated_nodes} dedicated + {config.spot_nodes} Spot nodes",
    )
    return pool_id


def adopt_session(
    config: AzureConfig,
    batch: BatchClient,
    blobs: BlobServiceClient,
    account_key: str | None,
    manifest: Manifest,
    teardown: Teardown,
) -> OpenSession:
    """The open session of ``manifest``'s job, taken over: its delete steps go on
    ``teardown`` in the original session's order (containers, pool, job), so they unwind
    job first."""
    now = dt.datetime.now(dt.UTC)
    containers = Containers(
        input=manifest.input_container,
        output=manifest.output_container,
        persistent_input=not manifest.delete_input_container,
        keep_outputs=not manifest.delete_output_container,
    )
    teardown.cleanup_command = cleanup_command(manifest.session_id)
    own_containers(containers, blobs, config.retry, teardown)
    if manifest.delete_pool and manifest.pool_id is not None:
        pool_id = manifest.pool_id
        teardown.push(f"pool {pool_id}", lambda: delete_pool(batch, pool_id, config.retry))
    job_id = manifest.job_id
    teardown.push(f"job {job_id}", lambda: delete_job(batch, job_id, config.retry))
    # SAS made while attached outlive a deadline that already passed by an hour
    expiry = max(manifest.deadline, now + dt.timedelta(hours=1))
    remaining = (manifest.deadline - now).total_seconds()
    return OpenSession(
        config=config,
        names=SessionNames(
            session_id=manifest.session_id, created_at=manifest.created_at, prefix=config.resource_prefix
        ),
        deadline=time.monotonic() + remaining,
        deadline_utc=manifest.deadline,
        pool_id=manifest.pool_id,
        owns_pool=manifest.delete_pool,
        setup=_existing_pool_setup(config),
        batch=batch,
        staging=_staging(config, blobs, containers, expiry, account_key),
    )
