"""``batch-transcode sessions``: the sessions of this library alive in an account.

Built on the same tags as the orphan sweep (:func:`~batch_transcode._azure.cleanup.find_orphans`):
every pool, job and container a session creates carries ``createdby``, ``session`` and
``createdat`` metadata. Each session found is described with its pools' state and node
counts (Get Pool, ``$select``ed) and its jobs' task counts (Get Job Task Counts, which
"may not always be up to date": the Batch REST reference for that operation), plus the
commands that attach to it or remove it.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

import attrs
from azure.batch import BatchClient

from batch_transcode._azure._calls import call
from batch_transcode._azure.cleanup import Orphan, OrphanKind, find_orphans
from batch_transcode._azure.names import cleanup_command
from batch_transcode._config import RetryPolicy

if TYPE_CHECKING:
    from azure.storage.blob import BlobServiceClient

__all__ = ["JobState", "PoolState", "SessionInfo", "list_sessions"]


@attrs.define(frozen=True, kw_only=True)
class PoolState:
    id: str
    state: str | None
    allocation_state: str | None
    dedicated_nodes: int
    spot_nodes: int

    def __str__(self) -> str:
        nodes = f"{self.dedicated_nodes} dedicated + {self.spot_nodes} spot node(s)"
        return f"pool {self.id}: {self.state or 'unknown'}/{self.allocation_state or 'unknown'}, {nodes}"


@attrs.define(frozen=True, kw_only=True)
class JobState:
    id: str
    tasks_done: int | None
    tasks_total: int | None

    def __str__(self) -> str:
        if self.tasks_total is None:
            return f"job {self.id}: task counts unknown"
        return f"job {self.id}: {self.tasks_done}/{self.tasks_total} task(s) done"


@attrs.define(frozen=True, kw_only=True)
class SessionInfo:
    """One session's resources as the account holds them now."""

    session_id: str
    created_at: dt.datetime | None
    pools: tuple[PoolState, ...]
    jobs: tuple[JobState, ...]
    containers: tuple[str, ...]

    def age(self, now: dt.datetime) -> dt.timedelta | None:
        return None if self.created_at is None else now - self.created_at

    @property
    def attach_command(self) -> str | None:
        """How to collect its outputs (only a session with a job has any)."""
        if not self.jobs:
            return None
        return f"batch-transcode attach {self.session_id} -o OUTPUT_DIR"

    @property
    def cleanup_command(self) -> str:
        return cleanup_command(self.session_id)

    def to_dict(self, now: dt.datetime) -> dict[str, Any]:
        age = self.age(now)
        return {
            "session": self.session_id,
            "created_at": None if self.created_at is None else self.created_at.isoformat(),
            "age_seconds": None if age is None else round(age.total_seconds()),
            "pools": [attrs.asdict(p) for p in self.pools],
            "jobs": [attrs.asdict(j) for j in self.jobs],
            "containers": list(self.containers),
            "attach": self.attach_command,
            "cleanup": self.cleanup_command,
        }


def _pool_state(batch: BatchClient, pool_id: str, policy: RetryPolicy) -> PoolState | None:
    select = ["id", "state", "allocationState", "currentDedicatedNodes", "currentLowPriorityNodes"]
    pool = call(
        policy, f"get pool {pool_id}", lambda: batch.get_pool(pool_id, select=select), missing_ok=True
    )
    if pool is None:  # deleted since it was listed
        return None
    return PoolState(
        id=pool_id,
        state=None if pool.state is None else str(getattr(pool.state, "value", pool.state)),
        allocation_state=None
        if pool.allocation_state is None
        else str(getattr(pool.allocation_state, "value", pool.allocation_state)),
        dedicated_nodes=pool.current_dedicated_nodes or 0,
        spot_nodes=pool.current_low_priority_nodes or 0,
    )


def _job_state(batch: BatchClient, job_id: str, policy: RetryPolicy) -> JobState | None:
    result = call(
        policy, f"get task counts of job {job_id}", lambda: batch.get_job_task_counts(job_id), missing_ok=True
    )
    if result is None:
        return None
    counts = result.task_counts
    total = counts.active + counts.running + counts.completed
    return JobState(id=job_id, tasks_done=counts.completed, tasks_total=total)


def list_sessions(
    batch: BatchClient,
    blobs: BlobServiceClient | None,
    policy: RetryPolicy,
    *,
    now: dt.datetime | None = None,
) -> list[SessionInfo]:
    """Every session with a pool, job or container still in the account, oldest first."""
    now = now or dt.datetime.now(dt.UTC)
    # A negative age lets in resources whose creation time is a little ahead of this clock.
    found: list[Orphan] = call(
        policy,
        "list pools, jobs and containers",
        lambda: find_orphans(batch, blobs, older_than=-dt.timedelta(days=1), now=now),
    )
    by_session: dict[str, list[Orphan]] = {}
    for orphan in found:
        by_session.setdefault(orphan.session, []).append(orphan)
    sessions = []
    for session_id, resources in by_session.items():
        times = [o.created_at for o in resources if o.created_at is not None]
        pools = [_pool_state(batch, o.name, policy) for o in resources if o.kind is OrphanKind.POOL]
        jobs = [_job_state(batch, o.name, policy) for o in resources if o.kind is OrphanKind.JOB]
        sessions.append(
            SessionInfo(
                session_id=session_id,
                created_at=min(times) if times else None,
                pools=tuple(sorted((p for p in pools if p is not None), key=lambda p: p.id)),
                jobs=tuple(sorted((j for j in jobs if j is not None), key=lambda j: j.id)),
                containers=tuple(sorted(o.name for o in resources if o.kind is OrphanKind.CONTAINER)),
            )
        )
    far_past = dt.datetime.min.replace(tzinfo=dt.UTC)
    return sorted(sessions, key=lambda s: (s.created_at or far_past, s.session_id))
