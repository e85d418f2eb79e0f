"""StorageProxy in front of a real Azurite: latency, seeded failures, byte-identical transfers."""

from __future__ import annotations

import datetime as dt
import http.client
import os
import threading
from collections.abc import Iterator

import pytest
from azure.core import exceptions as az
from azure.storage.blob import BlobSasPermissions, BlobServiceClient, generate_blob_sas

from batch_transcode.testing import OfflineAzure, StorageFaults, StorageProxy
from batch_transcode.testing._azurite import AZURITE_ACCOUNT
from helpers import azurite_connection_string

pytestmark = pytest.mark.azure


def _client(oa: OfflineAzure, port: int, **kwargs: object) -> BlobServiceClient:
    """A client of ``oa``'s storage account (its key is fresh per run) at ``port``."""
    return BlobServiceClient.from_connection_string(azurite_connection_string(port, oa.storage_key), **kwargs)  # type: ignore[arg-type]


@pytest.fixture
def proxy(offline_azure: OfflineAzure) -> Iterator[StorageProxy]:
    with StorageProxy(offline_azure.azurite_port) as p:
        yield p


def test_uploads_and_ranged_downloads_are_byte_identical(
    proxy: StorageProxy, offline_azure: OfflineAzure
) -> None:
    data = os.urandom(9 * 1024 * 1024 + 123)
    with _client(
        offline_azure, proxy.port, max_single_put_size=1024 * 1024, max_block_size=1024 * 1024
    ) as client:
        client.create_container("proxied")
        blob = client.get_blob_client("proxied", "dir/big file.bin")
        blob.upload_blob(data, max_concurrency=4)  # staged blocks + block list
        assert blob.download_blob(max_concurrency=4).readall() == data  # ranged GETs
        assert blob.download_blob(offset=1000, length=5000).readall() == data[1000:6000]
        small = client.get_blob_client("proxied", "small")
        small.upload_blob(b"")
        assert small.download_blob().readall() == b""
        assert small.get_blob_properties().size == 0  # HEAD
        client.delete_container("proxied")
    assert proxy.requests > 10 and proxy.failures_injected == 0


def test_chunked_request_bodies_are_forwarded(proxy: StorageProxy, offline_azure: OfflineAzure) -> None:
    client = offline_azure.blob_service_client()
    client.create_container("chunked")
    try:
        sas = generate_blob_sas(
            AZURITE_ACCOUNT,
            "chunked",
            "x",
            account_key=offline_azure.storage_key,
            permission=BlobSasPermissions(create=True, write=True),
            expiry=dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5),
        )
        conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)
        try:
            conn.request(
                "PUT",
                f"/{AZURITE_ACCOUNT}/chunked/x?{sas}",
                body=iter([b"ab", b"cd", b"e" * 100_000]),
                headers={"x-ms-blob-type": "BlockBlob"},
            )
            response = conn.getresponse()
            response.read()
        finally:
            conn.close()
        assert response.status == 201
        assert client.get_blob_client("chunked", "x").download_blob().readall() == b"abcd" + b"e" * 100_000
    finally:
        client.delete_container("chunked")


def test_latency_is_added(proxy: StorageProxy, offline_azure: OfflineAzure) -> None:
    proxy.set_faults(latency=0.5)
    # every answer is held back: a client that waits less than that gets none ...
    with (
        _client(offline_azure, proxy.port, retry_total=0, read_timeout=0.1) as impatient,
        pytest.raises(az.ServiceResponseError),
    ):
        impatient.get_service_properties()
    # ... one that waits gets it
    with _client(offline_azure, proxy.port, retry_total=0) as client:
        client.get_service_properties()
    assert proxy.requests == 2 and proxy.failures_injected == 0


def test_failures_follow_the_seeded_rate(proxy: StorageProxy) -> None:
    def run(seed: int) -> list[int]:
        proxy.set_faults(failure_rate=0.3, seed=seed, drop_share=0.0)
        statuses = []
        for _ in range(200):
            conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)
            try:
                conn.request("GET", f"/{AZURITE_ACCOUNT}?comp=list")
                response = conn.getresponse()
                response.read()
                statuses.append(response.status)
            finally:
                conn.close()
        return statuses

    first = run(42)
    assert first == run(42)  # reproducible
    busy = first.count(503)
    assert 40 <= busy <= 80  # 30 % of 200, give or take
    assert proxy.failures_injected >= busy


def test_dropped_connections_are_retried_by_the_sdk(proxy: StorageProxy, offline_azure: OfflineAzure) -> None:
    proxy.set_faults(failure_rate=0.5, seed=3, drop_share=1.0)
    with _client(offline_azure, proxy.port, retry_total=10, initial_backoff=0, increment_base=0) as client:
        for _ in range(5):
            client.get_service_properties()
    assert proxy.connections_dropped > 0
    proxy.set_faults(failure_rate=1.0, drop_share=0.0)
    with (
        _client(offline_azure, proxy.port, retry_total=1, initial_backoff=0, increment_base=0) as client,
        pytest.raises(az.HttpResponseError) as info,
    ):
        client.get_service_properties()
    assert info.value.status_code == 503 and "ServerBusy" in str(info.value)


def test_offline_azure_routes_storage_through_the_proxy(offline_azure_factory: object) -> None:
    make = offline_azure_factory
    assert callable(make)
    oa = make(storage_faults=StorageFaults(latency=0.01))
    proxy = oa.storage_proxy
    assert proxy is not None
    assert f":{proxy.port}/" in oa.env["AZURE_STORAGE_CONNECTION_STRING"]
    before = proxy.requests
    oa.blob_service_client().create_container("via-proxy")
    assert proxy.requests > before
    assert "via-proxy" in oa.containers()


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="failure_rate"):
        StorageProxy(1, failure_rate=2.0)
    with pytest.raises(ValueError, match="failure_rate"):
        StorageFaults(failure_rate=-1)


class _CountingClock:
    """A clock whose waits return at once and only move its own time on."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.now = 0.0
        self.slept = 0.0

    def monotonic(self) -> float:
        with self._lock:
            return self.now

    def sleep(self, seconds: float, /) -> None:
        with self._lock:
            self.now += seconds
            self.slept += seconds


def test_bandwidth_cap_paces_the_clients_transfers_and_spares_the_nodes(
    offline_azure: OfflineAzure,
) -> None:
    from batch_transcode.testing._proxy import NODE_USER_AGENT

    data = os.urandom(192 * 1024)
    rate = 512 * 1024  # bytes per second, each way
    clock = _CountingClock()
    with StorageProxy(offline_azure.azurite_port, bandwidth=rate, clock=clock) as capped:
        with _client(offline_azure, capped.port) as client:
            client.create_container("capped")
            blob = client.get_blob_client("capped", "x.bin")
            blob.upload_blob(data)
            assert blob.download_blob().readall() == data
            # the link held the transfers as long as the cap says: 192 KiB up and 192 KiB
            # down at 512 KiB/s each way (a clock that counts the waits, not the wall)
            assert clock.slept >= 2 * len(data) / rate * 0.999
            up, down = capped.link_bytes
            assert up >= len(data) and down >= len(data)
        held = clock.slept
        # a node's transfer (its User-Agent says so) does not cross the client's link
        with _client(offline_azure, capped.port, user_agent=NODE_USER_AGENT) as node:
            assert node.get_blob_client("capped", "x.bin").download_blob().readall() == data
            node.delete_container("capped")
        assert capped.link_bytes == (up, down) and clock.slept == held
        capped.set_faults(bandwidth=None)
        assert capped.bandwidth is None and capped.link_bytes == (0, 0)


def test_storage_faults_reject_a_bandwidth_that_is_not_positive() -> None:
    with pytest.raises(ValueError, match="bandwidth"):
        StorageFaults(bandwidth=0)
