"""submit / wait / as_completed / cancel on the local backend."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from batch_transcode import LocalConfig, RunTimeoutError, TranscodeJob, TranscodeSession


def test_submit_returns_at_once_and_wait_gives_the_report(
    tmp_path: Path, make_media: Callable[..., Path]
) -> None:
    sources = [make_media(tmp_path / "in" / f"long{i}.mp4", "long") for i in range(4)]
    with TranscodeSession(LocalConfig(workers=2)) as s:
        started = time.monotonic()
        job = s.submit(sources, output_dir=tmp_path / "out", preset="flac")
        assert isinstance(job, TranscodeJob)
        assert time.monotonic() - started < 0.5
        assert not job.done()
        report = job.wait()
    assert job.done() and report.ok
    assert [r.source for r in report] == sources
    assert job.progress.done == 4 and job.progress.succeeded == 4


def test_as_completed_yields_every_result_once(tmp_path: Path, make_media: Callable[..., Path]) -> None:
    sources = [make_media(tmp_path / f"v{i}.mp4") for i in range(5)]
    silent = make_media(tmp_path / "silent.mp4", "silent")
    with TranscodeSession(LocalConfig(workers=2)) as s:
        job = s.submit([*sources, silent], output_dir=tmp_path / "out")
        seen = list(job.as_completed(timeout=60))
    assert sorted(str(r.source) for r in seen) == sorted(str(p) for p in [*sources, silent])
    assert [r.ok for r in seen].count(False) == 1


def test_cancel_stops_running_work_and_leaves_no_partials(
    tmp_path: Path, make_media: Callable[..., Path]
) -> None:
    sources = [make_media(tmp_path / "in" / f"long{i}.mp4", "long") for i in range(8)]
    out = tmp_path / "out"
    with TranscodeSession(LocalConfig(workers=2)) as s:
        job = s.submit(sources, output_dir=out, preset="flac")
        deadline = time.monotonic() + 30
        while not list(out.glob(".bt-*")) and time.monotonic() < deadline:
            time.sleep(0.01)
        job.cancel()
        report = job.wait(timeout=30)
    assert job.cancelled
    assert not report.ok
    assert any(r.status == "cancelled" for r in report)
    assert not list(out.glob(".bt-*"))
    assert len(report) == 8


def test_wait_timeout_raises_and_the_job_keeps_running(
    tmp_path: Path, make_media: Callable[..., Path]
) -> None:
    sources = [make_media(tmp_path / f"long{i}.mp4", "long") for i in range(6)]
    with TranscodeSession(LocalConfig(workers=1)) as s:
        job = s.submit(sources, output_dir=tmp_path / "out", preset="flac")
        with pytest.raises(RunTimeoutError, match="still running"):
            job.wait(timeout=0.01)
        assert job.wait().ok


def test_several_jobs_share_one_session(tmp_path: Path, make_media: Callable[..., Path]) -> None:
    a = [make_media(tmp_path / "a" / f"{i}.mp4") for i in range(3)]
    b = [make_media(tmp_path / "b" / f"{i}.mp4") for i in range(3)]
    with TranscodeSession(LocalConfig(workers=2)) as s:
        job_a = s.submit(a, output_dir=tmp_path / "out-a")
        job_b = s.submit(b, output_dir=tmp_path / "out-b", preset="wav")
        assert job_a.wait().ok and job_b.wait().ok
    assert len(list((tmp_path / "out-b").glob("*.wav"))) == 3


def test_leaving_the_session_cancels_running_jobs(tmp_path: Path, make_media: Callable[..., Path]) -> None:
    sources = [make_media(tmp_path / f"long{i}.mp4", "long") for i in range(8)]
    with TranscodeSession(LocalConfig(workers=2)) as s:
        job = s.submit(sources, output_dir=tmp_path / "out", preset="flac")
    assert job.done() and job.cancelled
    assert not list((tmp_path / "out").glob(".bt-*"))


def test_progress_bar_follows_counts_without_double_counting() -> None:
    from batch_transcode import FileResult
    from batch_transcode._progress import ProgressSink

    sink = ProgressSink(3, bar=True)
    sink.counts(2, 1)
    assert sink._bar.n == 2
    for name in ("a", "b", "c"):
        sink.finished(FileResult(source=Path(name), output=None, ok=name != "b", error="x"))
    assert sink._bar.n == 3 and sink.done == 3 and sink.failed == 1
    sink.close()
