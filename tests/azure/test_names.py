"""Every name of a session, from :mod:`batch_transcode._azure.names`: made and parsed back,
valid for Batch and Blob Storage, distinct for distinct inputs."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from batch_transcode import AttachError
from batch_transcode._azure import names

NOW = dt.datetime(2026, 11, 29, 4, 12, 7, tzinfo=dt.UTC)
#: Batch ids: letters, digits, hyphens and underscores, at most 64 characters.
BATCH_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
#: Container names: 3-63 lowercase letters, digits and single hyphens, starting with a letter or digit.
CONTAINER = re.compile(r"^(?=.{3,63}$)[a-z0-9](?:[a-z0-9]|-(?!-))*[a-z0-9]$")

prefixes = st.from_regex(r"[a-z][a-z0-9]{0,7}(-[a-z0-9]{1,5})?", fullmatch=True)
times = st.datetimes(
    min_value=dt.datetime(2000, 1, 1), max_value=dt.datetime(2099, 12, 31), timezones=st.just(dt.UTC)
)
tokens = st.from_regex(r"[0-9a-f]{8}", fullmatch=True)


def test_a_session_and_its_resources() -> None:
    session = names.SessionNames(session_id=names.new_session_id("bt", NOW, "1a2b3c4d"), created_at=NOW)
    assert session.session_id == "bt-20261129t0412-1a2b3c4d"
    assert session.pool_id == "bt-20261129t0412-1a2b3c4d-pool"
    assert session.job_id() == "bt-20261129t0412-1a2b3c4d-job"
    assert session.job_id(2) == "bt-20261129t0412-1a2b3c4d-job2"
    assert (session.input_container, session.output_container) == (
        "bt-20261129t0412-1a2b3c4d-in",
        "bt-20261129t0412-1a2b3c4d-out",
    )
    assert len(session.auto_pool_prefix) <= 20
    assert session.tags == {
        "createdby": "batch-transcode",
        "session": "bt-20261129t0412-1a2b3c4d",
        "createdat": "2026-11-29T04:12:07Z",
    }
    assert names.cleanup_command(session.session_id) == (
        "batch-transcode cleanup --session bt-20261129t0412-1a2b3c4d --older-than 0s"
    )


def test_new_sessions_differ_and_carry_one_creation_time() -> None:
    first, second = names.SessionNames.new("bt", NOW), names.SessionNames.new("bt", NOW)
    assert first.session_id != second.session_id
    assert re.fullmatch(r"bt-20261129t0412-[0-9a-f]{8}", first.session_id)
    assert first.created_at == NOW and first.tags["createdat"] == "2026-11-29T04:12:07Z"


@given(prefixes, times, tokens, st.integers(min_value=1, max_value=10_000))
def test_ids_round_trip_and_are_valid(prefix: str, when: dt.datetime, token: str, run: int) -> None:
    session = names.SessionNames(
        session_id=names.new_session_id(prefix, when, token), created_at=when, prefix=prefix
    )
    parsed = names.parse_id(session.session_id)
    assert parsed == names.ParsedId(prefix, session.session_id, None)
    job = session.job_id(run)
    assert names.parse_id(job) == names.ParsedId(prefix, session.session_id, job)
    assert names.parse_id(job.upper()).job_id == job  # ids are read as the service keeps them
    for batch_id in (session.session_id, session.pool_id, job):
        assert BATCH_ID.match(batch_id), batch_id
    for container in (session.input_container, session.output_container):
        assert CONTAINER.match(container), container
    assert names.manifest_job_id(names.manifest_blob(job)) == job


@given(st.text(max_size=40))
def test_anything_else_is_not_an_id(text: str) -> None:
    if re.fullmatch(r"[a-z0-9-]+-\d{8}t\d{4}-[0-9a-f]{8}(-job\d*)?", text.strip().lower()):
        return
    with pytest.raises(AttachError, match="is not a batch-transcode session or job id"):
        names.parse_id(text)


@given(st.text(min_size=1, max_size=80))
def test_container_names_from_odd_session_ids(session_id: str) -> None:
    session = names.SessionNames(session_id=session_id, created_at=NOW, prefix="bt")
    for container in (session.input_container, session.output_container):
        assert CONTAINER.match(container), container


@given(st.lists(st.text(min_size=1, max_size=20), min_size=2, max_size=6, unique=True))
def test_distinct_paths_give_distinct_blobs(paths: list[str]) -> None:
    assert len({names.input_blob(p) for p in paths}) == len(paths)
    assert len(set(names.output_blobs(paths))) == len(paths)
    assert all("\\" not in b for b in names.output_blobs(paths))


def test_task_ids() -> None:
    assert names.task_id(0) == "t000000"
    assert names.task_id(1_234_567) == "t1234567"
    with pytest.raises(ValueError, match="index"):
        names.task_id(-1)
    assert names.diagnostics_path("j", "t000001", "stderr.txt") == ".bt-diagnostics/j/t000001/stderr.txt"
    assert names.manifest_job_id("outputs/x.json") is None
