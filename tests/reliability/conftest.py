"""Fixtures of the reliability suite: fast retries, one OfflineAzure with the storage
fault proxy, a 1 s clip."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# reliability_harness is shared with benchmarks/reliability.py
sys.path.insert(0, str(Path(__file__).parent))

from reliability_harness import make_clip

from batch_transcode import _retry
from batch_transcode.testing import OfflineAzure, StorageFaults


@pytest.fixture(autouse=True)
def _fast_retries() -> Iterator[None]:
    _retry.set_testing(True)
    yield
    _retry.set_testing(False)


@pytest.fixture(scope="module")
def offline() -> Iterator[OfflineAzure]:
    """Azurite behind the storage fault proxy (faults off) and the Batch emulator."""
    with OfflineAzure(storage_faults=StorageFaults()) as oa:
        yield oa


@pytest.fixture(scope="session")
def clip(tmp_path_factory: pytest.TempPathFactory, ffmpeg_exe: str) -> Path:
    return make_clip(ffmpeg_exe, tmp_path_factory.mktemp("clip") / "clip.mp4")
