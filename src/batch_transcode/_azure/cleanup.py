"""Deleting what a session created, and sweeping what crashed sessions left behind.

Deletes treat "already gone" (404, or a delete already in progress) as
success. :func:`find_orphans` and :func:`remove_orphans` are ``batch-transcode cleanup``: it finds
pools, jobs and containers tagged ``createdby=batch-transcode`` (metadata set
when they were created), older than ``--older-than``, optionally of one
``--session``, and removes them (``--dry-run`` only lists them).
"""

from __future__ import annotations

import datetime as dt
import enum
import logging
import re
from collections.abc import Callable, Mapping
from functools import partial
from typing import TYPE_CHECKING, Any

import attrs
from azure.batch import BatchClient
from azure.core import exceptions as az

from batch_transcode._azure._calls import call
from batch_transcode._azure.names import CREATED_BY
from batch_transcode._config import RetryPolicy
from batch_transcode._errors import ConfigError, TranscodeError

if TYPE_CHECKING:
    from azure.storage.blob import BlobServiceClient

__all__ = [
    "Orphan",
    "OrphanKind",
    "delete_container",
    "delete_job",
    "delete_pool",
    "find_orphans",
    "parse_age",
    "remove_orphans",
]

log = logging.getLogger(__name__)

#: How long a session's exit waits for the service to finish deleting (it goes on regardless).
JOB_DELETE_WAIT = 120.0
POOL_DELETE_WAIT = 120.0


def _never(exc: BaseException) -> bool:
    return False


def _delete(
    what: str,
    begin: Callable[[], Any],
    policy: RetryPolicy,
    wait: float,
    *,
    job_id: str | None = None,
    pool_id: str | None = None,
) -> None:
    poller = call(policy, f"delete {what}", begin, missing_ok=True, job_id=job_id, pool_id=pool_id)
    if poller is None:
        return
    if wait > 0:
        # one wait, not retried: the delete goes on in the service whatever happens here
        call(
            policy,
            f"delete {what}",
            lambda: poller.result(timeout=wait),
            missing_ok=True,
            retry_on=_never,
            job_id=job_id,
            pool_id=pool_id,
        )
    if poller.done():
        log.info("deleted %s", what)
    else:
        log.info("%s is being deleted (the service finishes it on its own)", what)


def delete_job(
    client: BatchClient, job_id: str, policy: RetryPolicy, *, wait: float = JOB_DELETE_WAIT
) -> None:
    """Delete a job (its tasks go with it); 'not found' is success."""
    begin = partial(client.begin_delete_job, job_id, polling_interval=1)
    _delete(f"job {job_id}", begin, policy, wait, job_id=job_id)


def delete_pool(
    client: BatchClient, pool_id: str, policy: RetryPolicy, *, wait: float = POOL_DELETE_WAIT
) -> None:
    """Delete a pool (its nodes are released and billing stops); 'not found' is success."""
    begin = partial(client.begin_delete_pool, pool_id, polling_interval=1)
    _delete(f"pool {pool_id}", begin, policy, wait, pool_id=pool_id)


def delete_container(blobs: BlobServiceClient, name: str, policy: RetryPolicy) -> None:
    """Delete a container (its blobs go with it); 'not found' is success. The one
    container delete: a session's teardown and the orphan sweep both use it."""

    def delete() -> bool:
        blobs.delete_container(name)
        return True

    if call(policy, f"delete container {name}", delete, missing_ok=True):
        log.info("deleted container %s", name)
    else:
        log.debug("container %s was already gone", name)


# -- the orphan sweep ---------------------------------------------------------------------

_AGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")


def parse_age(text: str) -> dt.timedelta:
    """``30m``, ``2h``, ``1d``, ``0s`` or plain seconds."""
    m = _AGE.match(text or "")
    if not m:
        raise ConfigError(f"--older-than {text!r} is not an age such as 30m, 2h, 1d or 0s")
    unit = {"s": 1, "": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]
    return dt.timedelta(seconds=float(m.group(1)) * unit)


class OrphanKind(enum.StrEnum):
    """What an orphan is, in the order the sweep removes them (jobs free their pools)."""

    JOB = "job"
    POOL = "pool"
    CONTAINER = "container"


@attrs.define(frozen=True, kw_only=True)
class Orphan:
    """A resource a session left behind, found by its tags."""

    kind: OrphanKind
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
    kind: OrphanKind,
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
        orphan = _match(OrphanKind.JOB, job.id or "", tags, job.creation_time, cutoff=cutoff, session=session)
        if orphan is not None:
            found.append(orphan)
    for pool in batch.list_pools(select=["id", "metadata", "creationTime", "state"]):
        tags = {m.name: m.value for m in pool.metadata or []}
        if pool.state == "deleting":
            continue
        orphan = _match(
            OrphanKind.POOL, pool.id or "", tags, pool.creation_time, cutoff=cutoff, session=session
        )
        if orphan is not None:
            found.append(orphan)
    if blobs is not None:
        for container in blobs.list_containers(include_metadata=True):
            tags = dict(container.metadata or {})
            orphan = _match(
                OrphanKind.CONTAINER,
                container.name,
                tags,
                container.last_modified,
                cutoff=cutoff,
                session=session,
            )
            if orphan is not None:
                found.append(orphan)
    return found


def remove_orphans(
    orphans: list[Orphan], batch: BatchClient, blobs: BlobServiceClient | None, policy: RetryPolicy
) -> list[tuple[Orphan, BaseException]]:
    """Delete jobs first, then pools, then containers; return what failed."""
    failures: list[tuple[Orphan, BaseException]] = []
    order = list(OrphanKind)
    for orphan in sorted(orphans, key=lambda o: order.index(o.kind)):
        try:
            if orphan.kind is OrphanKind.JOB:
                delete_job(batch, orphan.name, policy, wait=0)
            elif orphan.kind is OrphanKind.POOL:
                delete_pool(batch, orphan.name, policy, wait=0)
            elif blobs is not None:
                delete_container(blobs, orphan.name, policy)
        except (TranscodeError, az.AzureError) as exc:
            failures.append((orphan, exc))
    return failures
