"""End to end on OfflineAzure: the unmodified Azure clients against Azurite and the Batch emulator."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from batch_transcode import AuthenticationError, TranscodeSession
from batch_transcode.testing import OfflineAzure
from helpers import NOTHING_LEFT, DurationOf, MediaFactory, session_resources, wait_until

pytestmark = pytest.mark.azure

HOSTILE_NAMES = [
    "with space.mp4",
    'it\'s "quoted".mp4',
    "$(touch PWNED).mp4",
    "semi;colon.mp4",
    "-leading-dash.mp4",
    "ünïcødé 日本.mp4",
    "new\nline.mp4",
    "back`tick`.mp4",
]


def test_hostile_names_equal_basenames_and_a_silent_video(
    offline: OfflineAzure, tmp_path: Path, make_media: MediaFactory, duration_of: DurationOf
) -> None:
    src = tmp_path / "in"
    inputs = [make_media(src / name) for name in HOSTILE_NAMES]
    inputs += [make_media(src / "day1" / "talk.mp4"), make_media(src / "day2" / "talk.mp4")]
    silent = make_media(src / "silent.mp4", kind="silent")
    inputs.append(silent)
    out = tmp_path / "out"
    session = TranscodeSession(offline.config())
    with session:
        report = session.convert(inputs, output_dir=out, preset="mp3")
        session_id = session.session_id
    assert session_id
    by_source = {r.source: r for r in report}
    failed = by_source[silent]
    assert not failed.ok
    assert failed.error is not None
    assert "no audio stream" in failed.error
    assert "does not contain any stream" in failed.error.lower() or "exit" in failed.error
    for r in report:
        if r.source == silent:
            continue
        assert r.ok, r.error
        assert r.output is not None and r.output.is_file()
        duration = duration_of(r.output)
        assert duration is not None and duration > 0.5
    assert (out / "day1" / "talk.mp3").is_file() and (out / "day2" / "talk.mp3").is_file()
    assert (out / "$(touch PWNED).mp3").is_file()
    assert not list(tmp_path.rglob("PWNED")) and not Path("PWNED").exists()
    assert session_resources(offline, session_id) == NOTHING_LEFT


def test_250_files_streamed_in_collections_and_incremental_listings(
    offline: OfflineAzure, tmp_path: Path, make_media: MediaFactory
) -> None:
    inputs = [make_media(tmp_path / "in" / f"clip{i:03d}.mp4") for i in range(250)]
    before = len(offline.batch.request_log)
    with TranscodeSession(offline.config(dedicated_nodes=2, task_slots_per_node=8)) as session:
        report = session.convert(inputs, output_dir=tmp_path / "out", preset="mp3")
        session_id = session.session_id
    assert report.ok, report.summary()
    log = offline.batch.request_log[before:]
    collections = [e for e in log if e.operation == "Tasks_CreateTaskCollection"]
    added = [t["id"] for e in collections for t in json.loads(e.request_body)["value"]]
    assert sorted(added) == sorted(f"t{i:06d}" for i in range(250))  # each task added once
    assert all(len(json.loads(e.request_body)["value"]) <= 100 for e in collections)
    # full collections, plus a few sent early (each early one doubles the wait for the next)
    assert len(collections) <= 3 + 8
    listings = [e for e in log if e.operation == "Tasks_ListTasks"]
    assert listings and all(e.query["$filter"].startswith("state eq 'completed'") for e in listings)
    found = [i for i, e in enumerate(listings) if json.loads(e.response_body)["value"]]
    # after the first listing that found a task, only tasks changed since the newest seen
    assert all("stateTransitionTime ge DateTime'" in e.query["$filter"] for e in listings[found[0] + 1 :])
    listed = sum(len(json.loads(e.response_body)["value"]) for e in listings)
    assert 250 <= listed <= 2 * 250  # each finished task is read about once
    # every body passed the emulator's spec validation; the only 404s are delete pollers
    # seeing the job and pool gone
    bad = [(e.operation, e.status, e.error_code) for e in log if e.status >= 400]
    assert all(op in ("Jobs_GetJob", "Pools_GetPool") and st == 404 for op, st, _ in bad), bad
    assert session_resources(offline, session_id) == NOTHING_LEFT


def test_wrong_key_fails_before_anything_is_created(
    offline: OfflineAzure, tmp_path: Path, make_media: MediaFactory
) -> None:
    pools_before = list(offline.batch.pools())
    containers_before = set(offline.containers())
    config = offline.config(batch_key="d3Jvbmcga2V5IHdyb25nIGtleQ==")
    with pytest.raises(AuthenticationError), TranscodeSession(config) as session:
        session.convert([make_media(tmp_path / "a.mp4")], output_dir=tmp_path / "out")
    assert list(offline.batch.pools()) == pools_before
    assert set(offline.containers()) == containers_before


def test_cleanup_command_sweeps_kept_pool(
    offline: OfflineAzure, tmp_path: Path, make_media: MediaFactory, run_cleanup: Callable[..., int]
) -> None:
    with TranscodeSession(offline.config(keep_pool=True)) as session:
        session.convert([make_media(tmp_path / "a.mp4")], output_dir=tmp_path / "out")
        session_id = session.session_id

    def session_pools() -> list[str]:
        return session_resources(offline, session_id)["pools"]

    assert session_pools()
    assert run_cleanup(offline, session_id, dry_run=True) == 0
    assert session_pools()
    assert run_cleanup(offline, session_id) == 0
    wait_until(lambda: not session_pools(), what=f"the pool of {session_id} to go")
