"""The emulator's task indexes answer as a walk over every task would: filtered and
paged listings, task counts (the stale-count fault included), the runnable queue."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from azure.batch import BatchClient
from azure.batch import models as bm
from hypothesis import given, settings
from hypothesis import strategies as st

from batch_transcode.testing import Faults
from batch_transcode.testing._batch_emulator import BatchEmulator
from batch_transcode.testing._batch_emulator._task_table import SortedKeys


class _SmallKeys(SortedKeys[str]):
    LOAD = 3  # splits and empties sublists after a few keys


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.text("abcdef", min_size=1, max_size=3)), max_size=120))
def test_sorted_keys_behave_as_a_sorted_set(ops: list[tuple[bool, str]]) -> None:
    keys, model = _SmallKeys(), set()
    for add, key in ops:
        if add:
            keys.add(key)
            model.add(key)
        else:
            keys.discard(key)
            model.discard(key)
        assert len(keys) == len(model)
    expected = sorted(model)
    assert list(keys.after(None)) == expected
    for probe in ["", "a", "b", "cc", "f", "fff", *expected[:5]]:
        assert list(keys.after(probe)) == [k for k in expected if k > probe]


def _shell(script: str) -> str:
    return f"/bin/sh -c '{script}'"


def _listed(client: BatchClient, job: str, flt: str | None, page: int = 1000) -> list[str]:
    return [t.id or "" for t in client.list_tasks(job, filter=flt, max_results=page, select=["id"])]


def _expected(tasks: list[bm.BatchTask], keep: Any) -> list[str]:
    return sorted((t.id or "" for t in tasks if keep(t)), key=str.lower)


def _brute_counts(tasks: list[bm.BatchTask]) -> dict[str, int]:
    states = Counter("running" if t.state == "preparing" else bm.BatchTaskState(t.state).value for t in tasks)
    results = Counter(
        bm.BatchTaskExecutionResult(t.execution_info.result).value
        for t in tasks
        if t.state == "completed" and t.execution_info
    )
    return {
        "active": states["active"],
        "running": states["running"],
        "completed": states["completed"],
        "succeeded": results["success"],
        "failed": results["failure"],
    }


def _counts(client: BatchClient, job: str) -> dict[str, int]:
    c = client.get_job_task_counts(job).task_counts
    return {
        "active": c.active,
        "running": c.running,
        "completed": c.completed,
        "succeeded": c.succeeded,
        "failed": c.failed,
    }


def _check_listings(client: BatchClient, job: str) -> list[bm.BatchTask]:
    """Every indexed filter, paged and not, against the full listing's tasks."""
    everything = list(client.list_tasks(job))
    stamps = sorted({t.state_transition_time for t in everything if t.state == "completed"})
    cut = stamps[len(stamps) // 2]
    literal = "DateTime'" + cut.strftime("%Y-%m-%dT%H:%M:%S.%f") + "Z'"
    cases: list[tuple[str, Any]] = [
        ("state eq 'completed'", lambda t: t.state == "completed"),
        ("state eq 'running'", lambda t: t.state == "running"),
        ("state eq 'Active'", lambda t: t.state == "active"),
        (
            f"state eq 'completed' and stateTransitionTime ge {literal}",
            lambda t: t.state == "completed" and t.state_transition_time >= cut,
        ),
        (
            f"stateTransitionTime gt {literal} and state eq 'completed'",
            lambda t: t.state == "completed" and t.state_transition_time > cut,
        ),
        (f"stateTransitionTime ge {literal}", lambda t: t.state_transition_time >= cut),
        (
            f"state eq 'completed' and stateTransitionTime ge {literal} and executionInfo/exitCode eq 1",
            lambda t: (
                t.state == "completed" and t.state_transition_time >= cut and t.execution_info.exit_code == 1
            ),
        ),
        ("state eq 'completed' or state eq 'active'", lambda t: t.state in ("completed", "active")),
        (
            "executionInfo/exitCode eq 0",
            lambda t: t.execution_info is not None and t.execution_info.exit_code == 0,
        ),
    ]
    for flt, keep in cases:
        want = _expected(everything, keep)
        assert _listed(client, job, flt) == want, flt
        assert _listed(client, job, flt, page=3) == want, flt
    assert _listed(client, job, None, page=7) == _expected(everything, lambda t: True)
    assert _counts(client, job) == _brute_counts(everything)
    return everything


def test_listings_and_counts_from_the_indexes_match_every_task(
    client: BatchClient, emulator: BatchEmulator, h: Any, tmp_path: Path
) -> None:
    gate = tmp_path / "go"
    client.create_pool(h.pool_options("p", target_dedicated_nodes=2, task_slots_per_node=3))
    client.create_job(bm.BatchJobCreateOptions(id="ji", pool_info=bm.BatchPoolInfo(pool_id="p")))
    quick = [
        bm.BatchTaskCreateOptions(
            id=f"{'Q' if i % 3 else 'q'}{i:02d}", command_line="/bin/false" if i % 4 else "/bin/true"
        )
        for i in range(16)
    ]
    client.create_tasks("ji", quick)
    h.wait_until(lambda: _counts(client, "ji")["completed"] == 16, what="the quick tasks")
    # Six tasks hold every slot until the gate opens; ten more wait behind them.
    held = [
        bm.BatchTaskCreateOptions(
            id=f"g{i:02d}", command_line=_shell(f"while [ ! -f {gate} ]; do sleep 0.05; done")
        )
        for i in range(16)
    ]
    client.create_tasks("ji", held)
    h.wait_until(lambda: _counts(client, "ji")["running"] == 6, what="six running tasks")
    _check_listings(client, "ji")

    client.reactivate_task("ji", "Q01")  # a failed task runs again, behind the queue
    client.delete_task("ji", "q00")
    gate.touch()
    h.wait_until(lambda: _counts(client, "ji")["completed"] == 31, what="every task completed")
    everything = _check_listings(client, "ji")
    assert len(everything) == 31
    # The reactivated task keeps its place in the queue, ahead of the tasks added after it
    started = {t.id: t.execution_info.start_time for t in everything}
    # (the first six held every slot until the gate opened)
    waited = sorted(started[f"g{i:02d}"] for i in range(16))[6:]
    assert started["Q01"] <= waited[0]


def test_stale_count_fault_counts_recent_completions_as_running(tmp_path: Path, h: Any) -> None:
    with BatchEmulator(workdir=tmp_path / "batch", faults=Faults(stale_counts_seconds=3.0)) as emulator:
        client = h.make_client(emulator, retry_backoff_factor=0.01)
        client.create_pool(h.pool_options("p", target_dedicated_nodes=1, task_slots_per_node=4))
        client.create_job(bm.BatchJobCreateOptions(id="js", pool_info=bm.BatchPoolInfo(pool_id="p")))
        client.create_tasks(
            "js", [bm.BatchTaskCreateOptions(id=f"t{i}", command_line="/bin/true") for i in range(3)]
        )
        h.wait_until(
            lambda: all(t.state == "completed" for t in client.list_tasks("js")), what="three completed tasks"
        )
        stale = _counts(client, "js")
        assert stale["completed"] < 3 and stale["running"] == 3 - stale["completed"]
        h.wait_until(lambda: _counts(client, "js")["completed"] == 3, timeout=10, what="counts caught up")
        slots = client.get_job_task_counts("js").task_slot_counts
        assert (slots.completed, slots.succeeded, slots.running) == (3, 3, 0)
        client.close()
