"""The control-plane budget of a run, counted in the emulator's request log.

Monitoring is O(1) per poll (task counts; pool and node health only when the
counts stall, at most once per longest poll interval), tasks go in collections of
up to 100 (a few sent early, partly filled, so the first tasks start while inputs
still upload), and finished tasks
are read incrementally with $filter and $select, each about once.
benchmarks/control_plane.py measures the same at N=10000.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import wave
from pathlib import Path

import pytest

from batch_transcode import StagedFFmpeg, TranscodeSession
from batch_transcode.testing import OfflineAzure

pytestmark = pytest.mark.azure

MONITOR_OPS = {"Jobs_GetJobTaskCounts", "Pools_GetPool", "Nodes_ListNodes", "Jobs_GetJob"}

#: A stand-in for ffmpeg that copies its input to its output (the budget does not depend on the task).
STUB = """#!/bin/sh
in=""; out=""
while [ $# -gt 0 ]; do
  case "$1" in
    -version) echo "ffmpeg stub"; exit 0 ;;
    -i) in="$2"; shift 2; continue ;;
  esac
  out="$1"; shift
done
exec cp -- "${in#file:}" "${out#file:}"
"""


def _inputs(root: Path, n: int) -> list[Path]:
    first = root / "clip000.wav"
    root.mkdir(parents=True)
    with wave.open(str(first), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\x00\x00" * 800)
    paths = [first]
    for i in range(1, n):
        p = root / f"clip{i:03d}.wav"
        os.link(first, p)
        paths.append(p)
    return paths


def test_budget_of_a_run(offline: OfflineAzure, tmp_path: Path) -> None:
    n = 150
    stub = tmp_path / "ffmpeg-stub"
    stub.write_text(STUB)
    stub.chmod(0o755)
    inputs = _inputs(tmp_path / "in", n)
    offline.batch.drain_request_log()
    config = offline.config(ffmpeg=StagedFFmpeg(binary=stub), dedicated_nodes=2, task_slots_per_node=4)
    with TranscodeSession(config) as session:
        report = session.convert(inputs, output_dir=tmp_path / "out", preset="mp3")
    assert report.ok, report.summary()
    log = offline.batch.drain_request_log()
    ops = [r.operation for r in log]

    collections = [r for r in log if r.operation == "Tasks_CreateTaskCollection"]
    added = [t["id"] for r in collections for t in json.loads(r.request_body)["value"]]
    assert sorted(added) == [f"t{i:06d}" for i in range(n)]  # every task added once
    assert all(len(json.loads(r.request_body)["value"]) <= 100 for r in collections)
    assert len(collections) <= math.ceil(n / 100) + 8  # full ones, and a few sent early
    # terminate-when-done is set once, after the last collection
    assert ops.count("Jobs_UpdateJob") == 1
    last_collection = max(i for i, op in enumerate(ops) if op == "Tasks_CreateTaskCollection")
    assert ops.index("Jobs_UpdateJob") > last_collection

    # Finished tasks are read incrementally: each listing asks for completed tasks only,
    # with $select, and every task is read about once (at most twice) over the run.
    listings = [r for r in log if r.operation == "Tasks_ListTasks"]
    assert listings
    for r in listings:
        assert r.query["$filter"].startswith("state eq 'completed'")
        assert r.query["$select"] == "id,state,stateTransitionTime,executionInfo,nodeInfo"
    listed = [t["id"] for r in listings for t in json.loads(r.response_body)["value"]]
    assert set(listed) == set(added) and len(listed) <= 2 * n

    # Polls: one task-count read each (small), plus the pool and its nodes only when the
    # counts did not move since the previous poll (or on the first poll) ...
    start, end = ops.index("Jobs_GetJobTaskCounts"), ops.index("Jobs_DeleteJob")  # until teardown
    polls: list[tuple[int, list[str], int]] = []  # (completed, other operations, bytes)
    for r in log[start:end]:
        if r.operation == "Jobs_GetJobTaskCounts":
            completed = json.loads(r.response_body)["taskCounts"]["completed"]
            polls.append((completed, [], len(r.response_body)))
        elif r.operation in MONITOR_OPS:
            done, others, size = polls[-1]
            polls[-1] = (done, [*others, r.operation], size + len(r.response_body))
    # After the last poll the pool and its nodes are read once more, for the report's
    # usage (node allocation times and slots).
    assert polls[-1][0] == n and polls[-1][1] == ["Pools_GetPool", "Nodes_ListNodes"]
    for i, (completed, others, size) in enumerate(polls[:-1]):
        assert size <= 2048, (i, others, size)
        if others:
            assert i == 0 or completed == polls[i - 1][0], (i, others)
            assert sorted(set(others)) in (["Pools_GetPool"], ["Nodes_ListNodes", "Pools_GetPool"])

    # ... and at most once per longest poll interval, however often the counts lag.
    reads = [r.time for r in log[start:end] if r.operation == "Pools_GetPool"]
    gaps = [b - a for a, b in itertools.pairwise(reads)]
    assert all(g >= 0.9 * config.poll_interval_max for g in gaps), (gaps, config.poll_interval_max)

    # Everything else is a fixed number of requests: credentials check, image check, pool,
    # job, update, deletes and their pollers (the pool checks of the polls counted above).
    checks = sum(len(others) for _, others, _ in polls)
    assert checks <= 2 * len(polls)
    rest = len(log) - len(polls) - checks - len(collections) - len(listings)
    assert ops.count("Pools_ListSupportedImages") == 1
    assert rest <= 21, ops
