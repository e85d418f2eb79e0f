"""The Azure end to end run (40 files) under each fault switch and under the mix.

The full matrix (20 seeds per row) is ``benchmarks/reliability.py``; here each switch
runs once and the mix with three seeds.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from reliability_harness import SWITCHES, run_e2e, with_seed

from batch_transcode.testing import OfflineAzure
from helpers import NOTHING_LEFT

pytestmark = pytest.mark.azure

FILES = 40


def _run(offline: OfflineAzure, tmp_path: Path, clip: Path, switch: str, seed: int) -> None:
    faults, storage, overrides = with_seed(switch, seed)
    outcome = run_e2e(
        offline, tmp_path, clip, files=FILES, faults=faults, storage_faults=storage, overrides=overrides
    )
    assert outcome.problems == []
    assert outcome.correct == FILES
    assert outcome.leaks == NOTHING_LEFT
    assert outcome.duplicates == []
    if switch != "none":  # the switch really injected something
        assert outcome.batch_faults + outcome.storage_faults + outcome.requeues > 0


@pytest.mark.parametrize("switch", [s for s in SWITCHES if s != "mix"])
def test_each_switch(offline: OfflineAzure, tmp_path: Path, clip: Path, switch: str) -> None:
    _run(offline, tmp_path, clip, switch, seed=1)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_mix(offline: OfflineAzure, tmp_path: Path, clip: Path, seed: int) -> None:
    _run(offline, tmp_path, clip, "mix", seed)
