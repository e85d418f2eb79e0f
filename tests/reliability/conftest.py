"""Fixtures of the reliability suite: fast retries, one OfflineAzure with the storage
fault proxy, a 1 s clip."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# reliability_harness is shared with benchmarks/reliability.py
sys.path.insert(0, str(Path(__file__).parent))

from batch_transcode.testing import OfflineAzure, StorageFaults


@pytest.fixture(autouse=True)
def _fast_retries(fast_retries: None) -> None:
    """Every test here retries without waiting (``fast_retries`` in tests/conftest.py)."""


@pytest.fixture(scope="module")
def offline() -> Iterator[OfflineAzure]:
    """Azurite behind the storage fault proxy (faults off) and the Batch emulator."""
    with OfflineAzure(storage_faults=StorageFaults()) as oa:
        yield oa


@pytest.fixture(scope="session")
def clip(media_templates: dict[str, Path]) -> Path:
    """A 1 s video with a tone (the ``make_media`` template)."""
    return media_templates["video"]
