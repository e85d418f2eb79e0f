"""End to end on OfflineAzure: the unmodified Azure clients against Azurite and the Batch emulator."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.storage.blob import BlobServiceClient

from batch_transcode import AuthenticationError, TranscodeSession
from batch_transcode._cli import main as cli_main

pytestmark = pytest.mark.azure

testing = pytest.importorskip("batch_transcode.testing")
OfflineAzure: Any = getattr(testing, "OfflineAzure", None)
if OfflineAzure is None:  # pragma: no cover - while the harness is being built
    pytest.skip("batch_transcode.testing.OfflineAzure is not available", allow_module_level=True)

MediaFactory = Callable[..., Path]

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


@pytest.fixture(scope="module")
def offline() -> Iterator[Any]:
    with OfflineAzure() as oa:
        yield oa


def _containers(oa: Any) -> list[str]:
    client = BlobServiceClient.from_connection_string(oa.env["AZURE_STORAGE_CONNECTION_STRING"])
    return [c.name for c in client.list_containers()]


def _assert_nothing_left(oa: Any, session_id: str) -> None:
    assert [p for p in oa.batch.pools() if session_id in str(p)] == []
    assert [j for j in oa.batch.jobs() if session_id in str(j)] == []
    assert [c for c in _containers(oa) if c.startswith(session_id)] == []


def test_hostile_names_equal_basenames_and_a_silent_video(
    offline: Any, tmp_path: Path, make_media: MediaFactory, duration_of: Callable[[Path], float | None]
) -> None:
    src = tmp_path / "in"
    inputs = [make_media(src / name) for name in HOSTILE_NAMES]
    inputs += [make_media(src / "day1" / "talk.mp4"), make_media(src / "day2" / "talk.mp4")]
    silent = make_media(src / "silent.mp4", kind="silent")
    inputs.append(silent)
    out = tmp_path / "out"
    session = TranscodeSession(offline.config())
    with session:
        backend: Any = session._backend
        report = session.convert(inputs, output_dir=out, preset="mp3")
        session_id = backend.session_id
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
    _assert_nothing_left(offline, session_id)


def test_250_files_three_collections_and_one_listing(
    offline: Any, tmp_path: Path, make_media: MediaFactory
) -> None:
    inputs = [make_media(tmp_path / "in" / f"clip{i:03d}.mp4") for i in range(250)]
    before = len(offline.batch.request_log)
    with TranscodeSession(offline.config(dedicated_nodes=2, task_slots_per_node=8)) as session:
        report = session.convert(inputs, output_dir=tmp_path / "out", preset="mp3")
        session_id = session._backend.session_id  # type: ignore[attr-defined]
    assert report.ok, report.summary()
    log = offline.batch.request_log[before:]
    collections = [e for e in log if e.operation == "Tasks_CreateTaskCollection"]
    assert len(collections) == 3
    listings = [i for i, e in enumerate(log) if e.operation == "Tasks_ListTasks"]
    assert len(listings) == 1
    counts = [i for i, e in enumerate(log) if e.operation == "Jobs_GetJobTaskCounts"]
    assert counts and listings[0] > counts[-1]  # listed once, after the counts said "all done"
    # every body passed the emulator's spec validation; the only 404s are delete pollers
    # seeing the job and pool gone
    bad = [(e.operation, e.status, e.error_code) for e in log if e.status >= 400]
    assert all(op in ("Jobs_GetJob", "Pools_GetPool") and st == 404 for op, st, _ in bad), bad
    _assert_nothing_left(offline, session_id)


def test_wrong_key_fails_before_anything_is_created(
    offline: Any, tmp_path: Path, make_media: MediaFactory
) -> None:
    pools_before = list(offline.batch.pools())
    containers_before = set(_containers(offline))
    config = offline.config(batch_key="d3Jvbmcga2V5IHdyb25nIGtleQ==")
    with pytest.raises(AuthenticationError), TranscodeSession(config) as session:
        session.convert([make_media(tmp_path / "a.mp4")], output_dir=tmp_path / "out")
    assert list(offline.batch.pools()) == pools_before
    assert set(_containers(offline)) == containers_before


def test_cleanup_command_sweeps_kept_pool(
    offline: Any, tmp_path: Path, make_media: MediaFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    with TranscodeSession(offline.config(keep_pool=True)) as session:
        session.convert([make_media(tmp_path / "a.mp4")], output_dir=tmp_path / "out")
        session_id = session._backend.session_id  # type: ignore[attr-defined]
    assert [p for p in offline.batch.pools() if session_id in str(p)]
    for name, value in offline.env.items():
        monkeypatch.setenv(name, value)
    assert cli_main(["cleanup", "--older-than", "0s", "--dry-run", "--session", session_id]) == 0
    assert [p for p in offline.batch.pools() if session_id in str(p)]
    assert cli_main(["cleanup", "--older-than", "0s", "--session", session_id]) == 0
    _wait_gone(offline, session_id)


def _wait_gone(oa: Any, session_id: str, timeout: float = 30.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not [p for p in oa.batch.pools() if session_id in str(p)]:
            return
        time.sleep(0.2)
    raise AssertionError(f"pool of {session_id} still there")
