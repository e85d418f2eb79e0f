"""The orphan sweep's pure parts: ages, tag matching; a task outcome's typed state."""

from __future__ import annotations

import datetime as dt

import pytest
from azure.batch import models as bm

from batch_transcode import ConfigError
from batch_transcode._azure import cleanup
from batch_transcode._azure.cleanup import OrphanKind
from batch_transcode._azure.monitor import TaskOutcome

NOW = dt.datetime(2026, 11, 29, 12, 0, tzinfo=dt.UTC)
TAGS = {
    "createdby": "batch-transcode",
    "session": "bt-20261129t0400-1a2b3c4d",
    "createdat": "2026-11-29T04:00:00Z",
}


@pytest.mark.parametrize(
    ("text", "seconds"), [("0s", 0), ("30m", 1800), ("2h", 7200), ("1d", 86400), ("45", 45), ("1.5h", 5400)]
)
def test_parse_age(text: str, seconds: float) -> None:
    assert cleanup.parse_age(text) == dt.timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "2w", "-1h", "h", "2 hours"])
def test_parse_age_rejects(text: str) -> None:
    with pytest.raises(ConfigError, match="older-than"):
        cleanup.parse_age(text)


def test_match_by_tag_age_and_session() -> None:
    cutoff = NOW - dt.timedelta(hours=2)
    orphan = cleanup._match(OrphanKind.POOL, "p", TAGS, None, cutoff=cutoff, session=None)
    assert orphan is not None and orphan.session == TAGS["session"]
    assert str(orphan) == "pool p (session bt-20261129t0400-1a2b3c4d, created 2026-11-29 04:00 UTC)"
    # too young
    assert (
        cleanup._match(OrphanKind.POOL, "p", TAGS, None, cutoff=NOW - dt.timedelta(hours=9), session=None)
        is None
    )
    # another session
    assert cleanup._match(OrphanKind.POOL, "p", TAGS, None, cutoff=cutoff, session="bt-other") is None
    # not ours
    assert cleanup._match(OrphanKind.POOL, "p", {"session": "x"}, None, cutoff=cutoff, session=None) is None
    # no createdat: the service's creation time decides
    tags = {k: v for k, v in TAGS.items() if k != "createdat"}
    assert cleanup._match(OrphanKind.JOB, "j", tags, NOW, cutoff=cutoff, session=None) is None
    assert (
        cleanup._match(OrphanKind.JOB, "j", tags, NOW - dt.timedelta(days=1), cutoff=cutoff, session=None)
        is not None
    )


def test_task_outcome_success() -> None:
    done, ran = bm.BatchTaskState.COMPLETED, bm.BatchTaskState.RUNNING
    success, failure = bm.BatchTaskExecutionResult.SUCCESS, bm.BatchTaskExecutionResult.FAILURE
    assert TaskOutcome(task_id="t", state=done, result=success, exit_code=0).succeeded
    assert not TaskOutcome(task_id="t", state=done, result=failure, exit_code=1).succeeded
    assert not TaskOutcome(task_id="t", state=ran).succeeded
