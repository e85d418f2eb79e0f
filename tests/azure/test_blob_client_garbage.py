"""The SDK's blob clients leave reference cycles; making them through ``blob_client``
keeps that garbage bounded however many files a run has (no Storage is contacted:
making a client sends nothing)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest
from azure.storage.blob import BlobServiceClient

from batch_transcode._azure import _clients
from batch_transcode._azure._clients import blob_client


@pytest.fixture
def no_automatic_collection() -> Iterator[None]:
    """Python's automatic collections off, as in a big run where full ones come rarely."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _garbage_after(make: int, via_blob_client: bool) -> int:
    service = BlobServiceClient("http://127.0.0.1:1/devstoreaccount1", credential="?sv=2025&sig=x")
    for i in range(make):
        name = f"in/clip{i:06d}.wav"
        if via_blob_client:
            blob_client(service, "c", name)
        else:
            service.get_blob_client("c", name)
    return gc.collect()


def test_blob_clients_leave_bounded_garbage(
    no_automatic_collection: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_clients, "BLOB_CLIENTS_PER_COLLECTION", 100)
    made = 1000
    unbounded = _garbage_after(made, via_blob_client=False)
    bounded = _garbage_after(made, via_blob_client=True)
    # each client is garbage in cycles (the SDK's Serializer/Deserializer) ...
    assert unbounded >= 5 * made
    # ... of which at most the clients since the last full collection remain
    assert bounded <= unbounded * 100 / made * 1.1
