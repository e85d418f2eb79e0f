"""The public maintenance API on OfflineAzure: ``batch_transcode.list_sessions`` and
``batch_transcode.cleanup`` find what sessions left by their tags, sweep it, skip (and
count) what is too young, and close the clients they open; ``batch_transcode.testing.
set_testing`` turns retry waits off for users' own tests."""

from __future__ import annotations

import datetime as dt
import gc
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import attrs
import pytest

import batch_transcode
from batch_transcode import (
    AzureConfig,
    AzureError,
    CleanupReport,
    ConfigError,
    LocalConfig,
    RetryPolicy,
    TranscodeSession,
    cleanup,
    list_sessions,
)
from batch_transcode.testing import Faults, OfflineAzure, set_testing
from helpers import NOTHING_LEFT, leave_session_behind, wait_until

pytestmark = pytest.mark.azure

MediaFactory = Callable[..., Path]
OLD_SESSION = "bt-20240101t0000-0a0b0c0d"


@pytest.fixture(scope="module")
def offline() -> Iterator[OfflineAzure]:
    with OfflineAzure() as oa:
        yield oa


@pytest.fixture
def config(offline: OfflineAzure) -> Iterator[AzureConfig]:
    """The emulators' config; each test starts and ends with nothing in the account."""
    assert offline.leaks(timeout=30) == NOTHING_LEFT
    yield offline.config()
    offline.set_faults(None)
    assert offline.leaks(timeout=30) == NOTHING_LEFT


def _session_ids(config: AzureConfig) -> list[str]:
    return [s.session_id for s in list_sessions(config)]


def _keep_a_pool(config: AzureConfig, path: Path) -> str:
    """A finished session that kept its pool (``keep_pool=True``): the id of its session."""
    with TranscodeSession(attrs.evolve(config, keep_pool=True)) as session:
        session.convert([path], output_dir=path.parent / "out").raise_for_failures()
        session_id = session.session_id
    assert session_id is not None
    return session_id


def _old_container(offline: OfflineAzure, name: str = f"{OLD_SESSION}-in") -> str:
    """A container tagged as a session two days ago made it (a crash long forgotten)."""
    created = dt.datetime.now(dt.UTC) - dt.timedelta(days=2)
    tags = {"createdby": "batch-transcode", "session": OLD_SESSION, "createdat": created.isoformat()}
    offline.blob_service_client().create_container(name, metadata=tags)
    return name


def test_a_crashed_session_is_listed_dry_run_then_swept(
    offline: OfflineAzure, config: AzureConfig, tmp_path: Path, make_media: MediaFactory
) -> None:
    inputs = [make_media(tmp_path / "in" / f"talk {i}.mp4") for i in range(2)]
    session_id = leave_session_behind(offline, inputs, tmp_path / "child-out")

    (info,) = list_sessions(config)
    assert info.session_id == session_id and info.created_at is not None
    assert [j.id for j in info.jobs] == [f"{session_id}-job"] and info.jobs[0].tasks_done == 2
    assert len(info.pools) == 1 and len(info.containers) == 2
    assert info.cleanup_command == f"batch-transcode cleanup --session {session_id} --older-than 0s"

    # a dry run finds the job, the pool and both containers, and removes nothing
    dry = cleanup(config, older_than="0s", session=session_id, dry_run=True)
    assert isinstance(dry, CleanupReport) and dry.dry_run and dry.ok
    assert sorted(str(o.kind) for o in dry.found) == ["container", "container", "job", "pool"]
    assert {o.session for o in dry.found} == {session_id}
    assert dry.removed == () and dry.failures == () and dry.skipped_younger == 0
    assert str(dry) == "would remove 4 resources of 1 session (dry run: nothing removed)"
    assert _session_ids(config) == [session_id]
    assert offline.leaks() != NOTHING_LEFT

    # another session's id matches nothing
    assert cleanup(config, older_than="0s", session=OLD_SESSION).found == ()

    report = cleanup(config, older_than=dt.timedelta(0), session=session_id)
    assert report.ok and not report.dry_run
    assert set(report.removed) == set(dry.found) and report.failures == ()
    assert str(report) == "removed 4 resources of 1 session"
    assert session_id not in _session_ids(config)  # what is being deleted is no longer listed
    assert offline.leaks(timeout=30) == NOTHING_LEFT


def test_younger_resources_are_skipped_and_counted(
    offline: OfflineAzure, config: AzureConfig, tmp_path: Path, make_media: MediaFactory
) -> None:
    young = _keep_a_pool(config, make_media(tmp_path / "a.mp4"))
    assert _session_ids(config) == [young]

    # the default age (2 h): the kept pool is too young to go, and the report says so
    report = cleanup(config, dry_run=True)
    assert report.found == () and report.skipped_younger == 1 and report.ok
    assert [o.session for o in report.younger] == [young]
    assert str(report) == "nothing to clean up (1 resource of 1 session younger than 2h skipped)"
    assert cleanup(config, older_than="30m").removed == ()
    assert _session_ids(config) == [young]

    # an old orphan beside it: the old one goes, the young one stays
    old = _old_container(offline)
    assert _session_ids(config) == [OLD_SESSION, young]  # oldest first
    report = cleanup(config, older_than="1d")
    assert [o.name for o in report.removed] == [old] and report.skipped_younger == 1
    assert str(report) == ("removed 1 resource of 1 session; 1 resource of 1 session younger than 1d skipped")
    wait_until(lambda: old not in offline.containers(), what=f"container {old} to go")
    assert _session_ids(config) == [young]

    assert cleanup(config, older_than="0s", session=young).ok
    assert offline.leaks(timeout=30) == NOTHING_LEFT


@pytest.mark.parametrize("function", [cleanup, list_sessions])
def test_a_local_config_has_nothing_to_clean_up(function: Callable[[Any], object]) -> None:
    with pytest.raises(ConfigError, match="a local run leaves nothing in any account"):
        function(LocalConfig())


@pytest.mark.parametrize("age", ["soon", "-5m", dt.timedelta(seconds=-1), 7200])
def test_an_age_that_is_not_one_is_a_config_error(config: AzureConfig, age: Any) -> None:
    with pytest.raises(ConfigError, match=r"older.than"):
        cleanup(config, older_than=age)


# -- the clients are closed ----------------------------------------------------------------


def _open_sockets_to(ports: set[int]) -> list[Any]:
    psutil = pytest.importorskip("psutil")
    return [c for c in psutil.Process().net_connections(kind="tcp") if c.raddr and c.raddr.port in ports]


@pytest.fixture
def opened_clients(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The real clients the maintenance functions make, kept alive (so the garbage
    collector cannot close them in their place) and listed here."""
    from batch_transcode._azure import _clients

    made: list[Any] = []
    make_batch, make_blobs = _clients.make_batch_client, _clients.make_blob_service_client

    def batch_client(config: AzureConfig, **kwargs: Any) -> Any:
        made.append(make_batch(config, **kwargs))
        return made[-1]

    def blob_client(config: AzureConfig, **kwargs: Any) -> Any:
        client, key = make_blobs(config, **kwargs)
        made.append(client)
        return client, key

    monkeypatch.setattr(_clients, "make_batch_client", batch_client)
    monkeypatch.setattr(_clients, "make_blob_service_client", blob_client)
    return made


def test_the_clients_are_closed_whatever_happens(
    offline: OfflineAzure, config: AzureConfig, opened_clients: list[Any]
) -> None:
    _old_container(offline)
    ports = {urlparse(config.batch_endpoint).port or 0, urlparse(offline.blob_endpoint).port or 0}
    before = {(c.laddr, c.raddr) for c in _open_sockets_to(ports)}

    def left_open() -> set[Any]:
        # An error keeps the SDK's responses of its failed attempts (and their sockets)
        # alive in its traceback until it is collected; the clients themselves are kept
        # alive by ``opened_clients``, so what is still open after this is theirs.
        gc.collect()
        return {(c.laddr, c.raddr) for c in _open_sockets_to(ports)} - before

    assert _session_ids(config) == [OLD_SESSION]
    assert len(opened_clients) == 2 and not left_open()
    assert cleanup(config, dry_run=True, older_than="1h").found
    assert len(opened_clients) == 4 and not left_open()

    # a listing that fails (every List Jobs throttled) closes them too
    offline.set_faults(Faults(throttle_rate=1.0, retry_after_seconds=0, operations=("Jobs_ListJobs",)))
    with pytest.raises(AzureError):
        cleanup(attrs.evolve(config, retry=RetryPolicy(attempts=2)), older_than="1h")
    assert len(opened_clients) == 6 and not left_open()
    offline.set_faults(None)

    assert cleanup(config, older_than="1h").ok
    assert not left_open()


# -- set_testing ---------------------------------------------------------------------------


def test_set_testing_turns_the_waits_off_and_keeps_the_attempt_cap(
    offline: OfflineAzure, config: AzureConfig, caplog: pytest.LogCaptureFixture
) -> None:
    assert batch_transcode.testing.set_testing is batch_transcode._retry.set_testing
    # Waits of 30 s to 60 s between attempts, and a service that throttles every List Jobs
    # (Retry-After: 0, so the SDK pipeline's own retries do not wait either).
    slow = attrs.evolve(
        config, retry=RetryPolicy(attempts=3, timeout=600, wait_initial=30, wait_max=60, wait_jitter=1)
    )
    offline.set_faults(Faults(throttle_rate=1.0, retry_after_seconds=0, operations=("Jobs_ListJobs",)))
    set_testing(False)
    set_testing(True)
    with caplog.at_level(logging.WARNING, logger="batch_transcode"), pytest.raises(AzureError):
        list_sessions(slow)
    retries = [r.getMessage() for r in caplog.records if r.getMessage().startswith("retrying ")]
    assert len(retries) == 2  # three attempts, the cap of the policy
    assert all(m.endswith("next attempt in 0.0s") for m in retries), retries
    assert "429" in retries[0]
