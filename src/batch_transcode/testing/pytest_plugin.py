"""pytest fixtures for testing code that uses batch_transcode offline.

Registered automatically (the ``pytest11`` entry point) when batch_transcode is
installed. Importing this module is cheap and needs nothing beyond pytest:
Azurite is only looked for when a test asks for a fixture, so test suites that
do not use them are unaffected.

- ``offline_azure``: one :class:`~batch_transcode.testing.OfflineAzure` for the
  whole test session; Batch and storage faults are switched off before each test
  that uses it.
- ``offline_azure_factory``: a callable ``make(**kwargs) -> OfflineAzure`` (started)
  taking ``OfflineAzure``'s arguments (``faults=``, ``storage_faults=``, ...); every
  instance it made is stopped when the test ends.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from batch_transcode.testing import OfflineAzure

__all__ = ["offline_azure", "offline_azure_factory"]


@pytest.fixture(scope="session")
def _offline_azure_session() -> Iterator[OfflineAzure]:
    from batch_transcode.testing import OfflineAzure

    with OfflineAzure(storage_faults=None) as oa:
        yield oa


@pytest.fixture
def offline_azure(_offline_azure_session: OfflineAzure) -> OfflineAzure:
    """The session's OfflineAzure, with faults switched off."""
    _offline_azure_session.set_faults(None)
    _offline_azure_session.set_storage_faults(None)
    return _offline_azure_session


@pytest.fixture
def offline_azure_factory() -> Iterator[Callable[..., OfflineAzure]]:
    """``make(faults=..., storage_faults=..., allocation_delay=..., tls=...)`` -> a started
    OfflineAzure, stopped at the end of the test."""
    from batch_transcode.testing import OfflineAzure

    started: list[OfflineAzure] = []

    def make(**kwargs: Any) -> OfflineAzure:
        oa = OfflineAzure(**kwargs)
        started.append(oa)
        return oa.start()

    try:
        yield make
    finally:
        for oa in reversed(started):
            oa.stop()
