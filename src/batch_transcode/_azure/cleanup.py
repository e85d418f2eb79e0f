"""Deleting what a session created, and sweeping what crashed sessions left behind.

Deletes treat "already gone" (404, or a delete already in progress) as
success. :func:`cleanup_command_main` is ``batch-transcode cleanup``: it finds
pools, jobs and containers tagged ``createdby=batch-transcode`` (metadata set
when they were created), older than ``--older-than``, optionally of one
``--session``, and removes them (``--dry-run`` only lists them).
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import re
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import attrs
from azure.batch import BatchClient
from azure.core import exceptions as az

from batch_transcode import _retry
from batch_transcode._azure._errors import is_code, translate
from batch_transcode._azure.builders import CREATED_BY
from batch_transcode._config import AzureConfig, RetryPolicy
from batch_transcode._errors import ConfigError, TranscodeError

if TYPE_CHECKING:
    from azure.storage.blob import BlobServiceClient

__all__ = [
    "Orphan",
    "cleanup_command",
    "cleanup_command_main",
    "delete_job",
    "delete_pool",
    "find_orphans",
    "parse_age",
]

log = logging.getLogger(__name__)

#: How long a session's exit waits for the service to finish deleting (it goes on regardless).
JOB_DELETE_WAIT = 120.0
POOL_DELETE_WAIT = 120.0

_GONE_CODES = ("JobNotFound", "PoolNotFound", "JobBeingDeleted", "PoolBeingDeleted", "ContainerNotFound")


def _gone(exc: BaseException) -> bool:
    return isinstance(exc, az.ResourceNotFoundError) or is_code(exc, *_GONE_CODES)


def cleanup_command(session_id: str) -> str:
    """The exact command that removes what a session left behind."""
    return f"batch-transcode cleanup --session {session_id} --older-than 0s"


def _delete(
    what: str,
    begin: Callable[[], Any],
    policy: RetryPolicy,
    wait: float,
) -> None:
    try:
        poller = _retry.call(policy, f"delete {what}", begin)
    except az.AzureError as exc:
        if _gone(exc):
            log.debug("%s was already gone", what)
            return
        raise translate(exc, f"delete {what}") from exc
    if wait > 0:
        try:
            poller.result(timeout=wait)
        except az.AzureError as exc:
            if not _gone(exc):
                raise translate(exc, f"delete {what}") from exc
    if poller.done():
        log.info("deleted %s", what)
    else:
        log.info("%s is being deleted (the service finishes it on its own)", what)


def delete_job(
    client: BatchClient, job_id: str, policy: RetryPolicy, *, wait: float = JOB_DELETE_WAIT
) -> None:
    """Delete a job (its tasks go with it); 'not found' is success."""
    _delete(f"job {job_id}", lambda: client.begin_delete_job(job_id, polling_interval=1), policy, wait)


def delete_pool(
    client: BatchClient, pool_id: str, policy: RetryPolicy, *, wait: float = POOL_DELETE_WAIT
) -> None:
    """Delete a pool (its nodes are released and billing stops); 'not found' is success."""
    _delete(f"pool {pool_id}", lambda: client.begin_delete_pool(pool_id, polling_interval=1), policy, wait)


# -- the orphan sweep ---------------------------------------------------------------------

_AGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")


def parse_age(text: str) -> dt.timedelta:
    """``30m``, ``2h``, ``1d``, ``0s`` or plain seconds."""
    m = _AGE.match(text or "")
    if not m:
        raise ConfigError(f"--older-than {text!r} is not an age such as 30m, 2h, 1d or 0s")
    unit = {"s": 1, "": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]
    return dt.timedelta(seconds=float(m.group(1)) * unit)


@attrs.define(frozen=True, kw_only=True)
class Orphan:
    kind: str  # "job", "pool" or "container"
    name: str
    session: str
    created_at: dt.datetime | None

    def __str__(self) -> str:
        when = self.created_at.strftime("%Y-%m-%d %H:%M UTC") if self.created_at else "unknown time"
        return f"{self.kind} {self.name} (session {self.session}, created {when})"


def _parse_time(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def _match(
    kind: str,
    name: str,
    tags: Mapping[str, str],
    fallback_time: dt.datetime | None,
    *,
    cutoff: dt.datetime,
    session: str | None,
) -> Orphan | None:
    if tags.get("createdby") != CREATED_BY:
        return None
    sid = tags.get("session", "")
    if session is not None and sid != session:
        return None
    created = _parse_time(tags.get("createdat")) or fallback_time
    if created is not None and created > cutoff:
        return None
    return Orphan(kind=kind, name=name, session=sid, created_at=created)


def find_orphans(
    batch: BatchClient,
    blobs: BlobServiceClient | None,
    *,
    older_than: dt.timedelta,
    session: str | None = None,
    now: dt.datetime | None = None,
) -> list[Orphan]:
    """Jobs, pools and containers tagged by batch-transcode and older than ``older_than``."""
    cutoff = (now or dt.datetime.now(dt.UTC)) - older_than
    found: list[Orphan] = []
    for job in batch.list_jobs(select=["id", "metadata", "creationTime", "state"]):
        tags = {m.name: m.value for m in job.metadata or []}
        if job.state == "deleting":
            continue
        orphan = _match("job", job.id or "", tags, job.creation_time, cutoff=cutoff, session=session)
        if orphan is not None:
            found.append(orphan)
    for pool in batch.list_pools(select=["id", "metadata", "creationTime", "state"]):
        tags = {m.name: m.value for m in pool.metadata or []}
        if pool.state == "deleting":
            continue
        orphan = _match("pool", pool.id or "", tags, pool.creation_time, cutoff=cutoff, session=session)
        if orphan is not None:
            found.append(orphan)
    if blobs is not None:
        for container in blobs.list_containers(include_metadata=True):
            tags = dict(container.metadata or {})
            orphan = _match(
                "container", container.name, tags, container.last_modified, cutoff=cutoff, session=session
            )
            if orphan is not None:
                found.append(orphan)
    return found


def remove_orphans(
    orphans: list[Orphan], batch: BatchClient, blobs: BlobServiceClient | None, policy: RetryPolicy
) -> list[tuple[Orphan, BaseException]]:
    """Delete jobs first, then pools, then containers; return what failed."""
    failures: list[tuple[Orphan, BaseException]] = []
    order = {"job": 0, "pool": 1, "container": 2}
    for orphan in sorted(orphans, key=lambda o: order[o.kind]):
        try:
            if orphan.kind == "job":
                delete_job(batch, orphan.name, policy, wait=0)
            elif orphan.kind == "pool":
                delete_pool(batch, orphan.name, policy, wait=0)
            elif blobs is not None:
                _delete_container(blobs, orphan.name, policy)
        except (TranscodeError, az.AzureError) as exc:
            failures.append((orphan, exc))
    return failures


def _delete_container(blobs: BlobServiceClient, name: str, policy: RetryPolicy) -> None:
    try:
        _retry.call(policy, f"delete container {name}", lambda: blobs.delete_container(name))
    except az.AzureError as exc:
        if _gone(exc):
            return
        raise translate(exc, f"delete container {name}") from exc
    log.info("deleted container %s", name)


def cleanup_command_main(args: argparse.Namespace) -> int:
    """``batch-transcode cleanup [--older-than 2h] [--dry-run] [--session ID]``."""
    import importlib

    from batch_transcode._azure._clients import make_batch_client

    staging = importlib.import_module("batch_transcode._azure.staging")

    older_than = parse_age(getattr(args, "older_than", "2h") or "2h")
    session = getattr(args, "session", None)
    dry_run = bool(getattr(args, "dry_run", False))
    config = AzureConfig.from_env()
    batch = make_batch_client(config)
    blobs, _key = staging.make_blob_service_client(config)
    try:
        orphans = find_orphans(batch, blobs, older_than=older_than, session=session)
    except az.AzureError as exc:
        raise translate(exc, "list pools, jobs and containers") from exc
    if not orphans:
        print("nothing to clean up")
        return 0
    for orphan in orphans:
        print(f"{'would remove' if dry_run else 'removing'} {orphan}")
    if dry_run:
        return 0
    failures = remove_orphans(orphans, batch, blobs, config.retry)
    for orphan, error in failures:
        print(f"could not remove {orphan}: {error}")
    print(f"removed {len(orphans) - len(failures)} of {len(orphans)} resource(s)")
    return 1 if failures else 0
