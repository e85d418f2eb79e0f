"""Looking after an Azure account: the sessions alive in it, and sweeping what crashed ones left.

:func:`cleanup` and :func:`list_sessions` are ``batch-transcode cleanup`` and
``batch-transcode sessions`` for Python code (a script, an app, a notebook). Both
find a session's resources by the tags every session puts on the pools, jobs and
containers it creates (``createdby=batch-transcode``, ``session``, ``createdat``), so
resources you own (a ``pool_id`` pool, an ``input_container``) are never listed or
swept. Each call opens its own Batch and storage clients and closes them before it
returns, whatever happens.

The Azure SDK is imported when one of them is first called, not when
``batch_transcode`` is imported.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from typing import TYPE_CHECKING

import attrs

from batch_transcode._config import AzureConfig
from batch_transcode._errors import ConfigError

if TYPE_CHECKING:
    from azure.batch import BatchClient
    from azure.storage.blob import BlobServiceClient

    from batch_transcode._azure.cleanup import Orphan
    from batch_transcode._azure.sessions import SessionInfo

__all__ = ["DEFAULT_OLDER_THAN", "CleanupReport", "as_age", "cleanup", "format_age", "list_sessions"]

#: How old a session's resources must be before :func:`cleanup` removes them, unless told
#: (also ``batch-transcode cleanup --older-than``). A session still running after that
#: long (``session_timeout`` allows 6 h) would be swept too: give a longer age, or
#: ``session=``, when long runs may be live.
DEFAULT_OLDER_THAN = dt.timedelta(hours=2)


def as_age(value: dt.timedelta | str) -> dt.timedelta:
    """An age from a ``timedelta`` or text such as ``90s``, ``30m``, ``2h``, ``1d``, ``0s``
    or plain seconds; raises :class:`~batch_transcode.ConfigError` for anything else."""
    if isinstance(value, dt.timedelta):
        if value < dt.timedelta(0):
            raise ConfigError(f"older_than must not be negative (got {value})")
        return value
    if isinstance(value, str):
        from batch_transcode._azure.cleanup import parse_age

        return parse_age(value)
    raise ConfigError(f"older_than must be a datetime.timedelta or text such as '2h', not {value!r}")


def check_id(ident: str) -> None:
    """Raise :class:`~batch_transcode.AttachError` unless ``ident`` has the shape of a
    session or job id (nothing is read: a malformed id is refused before any
    configuration or credential is)."""
    from batch_transcode._azure.names import parse_id

    parse_id(ident)


def format_age(age: dt.timedelta) -> str:
    """``2h``, ``30m``, ``90s``, ``1d``: the shortest exact form, as ``--older-than`` takes it."""
    seconds = age.total_seconds()
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def _count(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _resources(orphans: tuple[Orphan, ...]) -> str:
    """``3 resources of 1 session``."""
    return f"{_count(len(orphans), 'resource')} of {_count(len({o.session for o in orphans}), 'session')}"


@attrs.define(frozen=True, kw_only=True)
class CleanupReport:
    """What :func:`cleanup` found and did.

    ``found``: the tagged resources old enough to remove (jobs, pools, containers), each
    an ``Orphan`` with ``kind``, ``name``, ``session`` and ``created_at``; ``removed``:
    those whose deletion was accepted (none in a dry run); ``failures``: each orphan that
    could not be removed with the error's text; ``younger``: the tagged resources skipped
    because they are younger than ``older_than`` (a session may still be using them).
    """

    found: tuple[Orphan, ...]
    removed: tuple[Orphan, ...]
    failures: tuple[tuple[Orphan, str], ...]
    dry_run: bool
    older_than: dt.timedelta
    younger: tuple[Orphan, ...] = ()

    @property
    def ok(self) -> bool:
        """True when nothing failed to be removed (also when there was nothing to remove)."""
        return not self.failures

    @property
    def skipped_younger(self) -> int:
        """How many tagged resources were left because they are younger than ``older_than``."""
        return len(self.younger)

    def _skipped(self) -> str:
        return f"{_resources(self.younger)} younger than {format_age(self.older_than)} skipped"

    def __str__(self) -> str:
        skipped = self._skipped() if self.younger else ""
        if not self.found:
            return f"nothing to clean up ({skipped})" if skipped else "nothing to clean up"
        what = _resources(self.found)
        if self.dry_run:
            head = f"would remove {what} (dry run: nothing removed)"
        elif self.failures:
            head = f"removed {len(self.removed)} of {what}; {len(self.failures)} could not be removed"
        else:
            head = f"removed {what}"
        lines = [f"{head}; {skipped}" if skipped else head]
        lines += [f"could not remove {orphan}: {error}" for orphan, error in self.failures]
        return "\n".join(lines)


def _require_azure(config: object, what: str) -> AzureConfig:
    if not isinstance(config, AzureConfig):
        raise ConfigError(
            f"{what} needs an AzureConfig, not {type(config).__name__}: a local run leaves nothing "
            "in any account, so there is nothing to list or clean up"
        )
    return config


def _open_clients(config: AzureConfig, stack: contextlib.ExitStack) -> tuple[BatchClient, BlobServiceClient]:
    """The Batch and storage clients of ``config``, each closed when ``stack`` unwinds."""
    from batch_transcode._azure._clients import make_batch_client, make_blob_service_client

    batch = make_batch_client(config)
    stack.callback(batch.close)
    blobs, _key = make_blob_service_client(config)
    stack.callback(blobs.close)
    return batch, blobs


def cleanup(
    config: AzureConfig,
    *,
    older_than: dt.timedelta | str = DEFAULT_OLDER_THAN,
    session: str | None = None,
    dry_run: bool = False,
) -> CleanupReport:
    """Remove the jobs, pools and containers that sessions of this library left behind.

    Finds every resource tagged ``createdby=batch-transcode`` in the account of
    ``config`` (only those of ``session`` when given) created more than ``older_than``
    ago (a ``timedelta``, or text such as ``"30m"``, ``"2h"``, ``"0s"``), and deletes
    them: jobs first, then pools, then containers; "already gone" is success. The
    service finishes a pool's or job's deletion on its own after accepting it.
    ``dry_run=True`` only finds them. Returns a :class:`CleanupReport`; a deletion that
    fails is reported there (``.ok`` is false), not raised. Listing the account is
    retried under ``config.retry`` and raises an :class:`~batch_transcode.AzureError`
    if it still fails.
    """
    age = as_age(older_than)
    azure = _require_azure(config, "cleanup()")
    from batch_transcode._azure._calls import call
    from batch_transcode._azure.cleanup import find_orphans, remove_orphans

    with contextlib.ExitStack() as stack:
        batch, blobs = _open_clients(azure, stack)
        now = dt.datetime.now(dt.UTC)
        # One listing of everything tagged (a day's margin for clocks ahead of this one),
        # split by age here: what is old enough goes, the rest is counted as skipped.
        tagged = call(
            azure.retry,
            "list pools, jobs and containers",
            lambda: find_orphans(batch, blobs, older_than=-dt.timedelta(days=1), session=session, now=now),
        )
        cutoff = now - age
        found = [o for o in tagged if o.created_at is None or o.created_at <= cutoff]
        younger = tuple(o for o in tagged if o.created_at is not None and o.created_at > cutoff)
        failures: list[tuple[Orphan, BaseException]] = []
        if found and not dry_run:
            failures = remove_orphans(found, batch, blobs, azure.retry)
    failed = [orphan for orphan, _ in failures]
    return CleanupReport(
        found=tuple(found),
        removed=() if dry_run else tuple(o for o in found if o not in failed),
        failures=tuple((orphan, str(error)) for orphan, error in failures),
        dry_run=dry_run,
        older_than=age,
        younger=younger,
    )


def list_sessions(config: AzureConfig) -> list[SessionInfo]:
    """The sessions of this library with a pool, job or container in the account, oldest first.

    Each ``SessionInfo`` has the ``session_id``, ``created_at``, its ``pools`` (state,
    allocation state, node counts), ``jobs`` (tasks done of total), ``containers``, and
    the ``attach_command`` / ``cleanup_command`` that collect or remove it. A session
    whose process is still running is listed too.
    """
    azure = _require_azure(config, "list_sessions()")
    from batch_transcode._azure.sessions import list_sessions as _list

    with contextlib.ExitStack() as stack:
        batch, blobs = _open_clients(azure, stack)
        return _list(batch, blobs, azure.retry)
