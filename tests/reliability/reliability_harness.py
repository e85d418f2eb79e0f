"""One end-to-end run on OfflineAzure and the checks the reliability suite makes of it.

Shared by ``tests/reliability`` and ``benchmarks/reliability.py`` (the full matrix).
"""

from __future__ import annotations

import dataclasses
import shutil
import sys
import tempfile
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import attrs

# make_clip (re-exported for benchmarks/reliability.py) and copy_file live in tests/helpers.py
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from batch_transcode import TranscodeSession
from batch_transcode._ffmpeg import find_ffmpeg
from batch_transcode.samples import decoded_duration
from batch_transcode.testing import Faults, OfflineAzure, StorageFaults
from helpers import copy_file, make_clip, session_jobs, session_resources

__all__ = ["SWITCHES", "Outcome", "check_outputs", "duplicate_tasks", "make_clip", "run_e2e", "with_seed"]

#: The switches of the emulator and the storage proxy, each at the rate the matrix uses.
SWITCHES: dict[str, tuple[Faults | None, StorageFaults | None, dict[str, Any], str]] = {
    "none": (None, None, {}, "-"),
    "throttle (429 + Retry-After)": (
        Faults(throttle_rate=0.05, retry_after_seconds=0),
        None,
        {},
        "5% of Batch",
    ),
    "5xx (500/503)": (Faults(error_rate=0.05), None, {}, "5% of Batch"),
    "dropped after processing": (Faults(drop_after_processing_rate=0.05), None, {}, "5% of Batch"),
    "slow answers (0.2 s)": (Faults(slow_rate=0.05, slow_seconds=0.2), None, {}, "5% of Batch"),
    "Spot preemption": (
        Faults(preempt_rate=0.2),
        None,
        {"dedicated_nodes": 0, "spot_nodes": 2},
        "20% of task runs",
    ),
    "storage 503/drops": (None, StorageFaults(failure_rate=0.02), {}, "2% of Storage"),
    "mix": (
        Faults(
            throttle_rate=0.0167,
            retry_after_seconds=0,
            error_rate=0.0167,
            drop_after_processing_rate=0.0167,
        ),
        StorageFaults(failure_rate=0.02),
        {},
        "5% of Batch + 2% of Storage",
    ),
}


def with_seed(switch: str, seed: int) -> tuple[Faults | None, StorageFaults | None, dict[str, Any]]:
    faults, storage, overrides, _ = SWITCHES[switch]
    return (
        dataclasses.replace(faults, seed=seed) if faults is not None else None,
        attrs.evolve(storage, seed=seed) if storage is not None else None,
        overrides,
    )


@attrs.define(kw_only=True)
class Outcome:
    """What one run produced and what it left behind."""

    files: int
    session_id: str
    correct: int
    problems: list[str]
    leaks: dict[str, list[str]]
    duplicates: list[str]
    batch_faults: int
    storage_faults: int
    requeues: int

    @property
    def ok(self) -> bool:
        return self.correct == self.files and not any(self.leaks.values()) and not self.duplicates


def check_outputs(report: Any, ffmpeg: str, expected: float = 1.0, tolerance: float = 0.15) -> list[str]:
    """Every result ok, its output decodes, and lasts ``expected`` seconds."""
    problems: list[str] = []

    def one(result: Any) -> str | None:
        if not result.ok or result.output is None:
            return f"{result.source.name}: failed: {result.error}"
        duration = decoded_duration(result.output, ffmpeg=ffmpeg)
        if duration is None:
            return f"{result.source.name}: output does not decode"
        if abs(duration - expected) > tolerance:
            return f"{result.source.name}: output lasts {duration:.2f}s, not {expected}s"
        return None

    with ThreadPoolExecutor(max_workers=4) as pool:
        for problem in pool.map(one, list(report)):
            if problem:
                problems.append(problem)
    return problems


def duplicate_tasks(oa: OfflineAzure, job_ids: list[str], expected_ids: set[str]) -> tuple[list[str], int]:
    """Tasks added more than once, missing or unexpected; and how many task runs were
    requeued (preemption)."""
    found: list[str] = []
    seen: list[str] = []
    requeues = 0
    for job_id in job_ids:
        for task in oa.batch.tasks(job_id):
            seen.append(task.id)
            requeues += task.requeue_count
    dupes = {t for t in seen if seen.count(t) > 1}
    found += [f"{t} added twice" for t in sorted(dupes)]
    found += [f"{t} missing" for t in sorted(expected_ids - set(seen))]
    found += [f"{t} unexpected" for t in sorted(set(seen) - expected_ids)]
    return found, requeues


def run_e2e(
    oa: OfflineAzure,
    workdir: Path,
    clip: Path,
    *,
    files: int = 40,
    faults: Faults | None = None,
    storage_faults: StorageFaults | None = None,
    overrides: Mapping[str, Any] | None = None,
    ffmpeg: str | None = None,
) -> Outcome:
    """Convert ``files`` copies of ``clip`` on ``oa`` under the given faults; check the
    outputs, the tasks the emulator saw, and what is left afterwards."""
    ffmpeg = ffmpeg or find_ffmpeg()
    src = Path(tempfile.mkdtemp(prefix="in-", dir=workdir))
    out = Path(tempfile.mkdtemp(prefix="out-", dir=workdir))
    inputs = [copy_file(clip, src / f"clip{i:03d}.mp4") for i in range(files)]
    oa.set_faults(None)
    oa.set_storage_faults(None)
    proxy = oa.storage_proxy
    storage_before = (proxy.failures_injected + proxy.connections_dropped) if proxy is not None else 0
    log_before = len(oa.batch.request_log)
    config = oa.config(**dict(overrides or {}))
    oa.set_faults(faults)
    oa.set_storage_faults(storage_faults)
    try:
        with TranscodeSession(config) as session:
            report = session.convert(inputs, output_dir=out, preset="mp3")
            session_id = str(session.session_id)
            job_ids = session_jobs(oa, session_id)
            duplicates, requeues = duplicate_tasks(oa, job_ids, {f"t{i:06d}" for i in range(files)})
    finally:
        oa.set_faults(None)
        oa.set_storage_faults(None)
    batch_faults = sum(1 for r in oa.batch.request_log[log_before:] if r.fault)
    storage_now = (proxy.failures_injected + proxy.connections_dropped) if proxy is not None else 0
    problems = check_outputs(report, ffmpeg)
    leaks = session_resources(oa, session_id, timeout=10.0)
    shutil.rmtree(src, ignore_errors=True)
    shutil.rmtree(out, ignore_errors=True)
    return Outcome(
        files=files,
        session_id=session_id,
        correct=files - len(problems),
        problems=problems,
        leaks=leaks,
        duplicates=duplicates,
        batch_faults=batch_faults,
        storage_faults=storage_now - storage_before,
        requeues=requeues,
    )
