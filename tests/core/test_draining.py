"""Draining: a map only taken from, whose memory goes as it empties."""

from __future__ import annotations

import tracemalloc

from batch_transcode._draining import Draining


def test_pops_give_each_value_once() -> None:
    left = Draining((f"t{i}", i) for i in range(3000))
    assert len(left) == 3000 and "t5" in left
    assert [left.pop(f"t{i}") for i in range(2990)] == list(range(2990))
    assert left.pop("t5") is None and "t5" not in left
    assert len(left) == 10 and "t2995" in left


def test_its_table_shrinks_as_it_empties() -> None:
    """A dict keeps the table it grew to (5 MB at 100,000 entries) after its keys are
    popped; a run's map of the files not reported yet is popped down to nothing."""
    keys = [f"t{i:06d}" for i in range(100_000)]
    tracemalloc.start()
    try:
        left = Draining((k, None) for k in keys)
        full = tracemalloc.get_traced_memory()[0]
        for k in keys[:99_000]:
            left.pop(k)
        drained = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert full > 3_000_000
    assert drained < full / 10, (full, drained)
    assert len(left) == 1000
