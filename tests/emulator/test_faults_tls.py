"""Request faults as the client sees them, and the TLS / bearer-token mode."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trustme
from azure.batch import BatchClient
from azure.batch import models as bm
from azure.core.credentials import AccessToken
from azure.core.exceptions import HttpResponseError, ServiceResponseError

from batch_transcode.testing._batch_emulator import BatchEmulator, Faults
from helpers import wait_until


def test_throttled_get_is_retried_by_the_client(client: BatchClient, emulator: BatchEmulator) -> None:
    client.create_pool(bm.BatchPoolCreateOptions(id="p", vm_size="standard_d2s_v3", target_dedicated_nodes=0))
    emulator.set_faults(
        Faults(seed=3, throttle_rate=0.5, retry_after_seconds=0, operations=frozenset({"Pool_Get"}))
    )
    emulator.clear_request_log()
    for _ in range(4):
        assert client.get_pool("p").id == "p"
    log = [r for r in emulator.request_log if r.operation == "Pools_GetPool"]
    throttled = [r for r in log if r.status == 429]
    assert throttled and all(r.error_code == "TooManyRequests" for r in throttled)
    assert len(log) == 4 + len(throttled)


def test_server_errors(client: BatchClient, emulator: BatchEmulator) -> None:
    emulator.set_faults(Faults(seed=1, error_rate=1.0))
    with pytest.raises(HttpResponseError) as info:
        client.create_pool(bm.BatchPoolCreateOptions(id="p", vm_size="standard_d2s_v3"), retry_total=1)
    assert info.value.status_code in (500, 503)
    assert {r.error_code for r in emulator.request_log} <= {"InternalError", "ServerBusy"}
    assert emulator.pools() == []  # never processed


def test_dropped_post_was_processed(client: BatchClient, emulator: BatchEmulator) -> None:
    emulator.set_faults(Faults(drop_after_processing_rate=1.0, operations=frozenset({"Pools_CreatePool"})))
    with pytest.raises(ServiceResponseError):
        client.create_pool(
            bm.BatchPoolCreateOptions(id="p", vm_size="standard_d2s_v3", target_dedicated_nodes=0)
        )
    assert [p.id for p in emulator.pools()] == ["p"]
    assert emulator.request_log[-1].status == 0 and emulator.request_log[-1].fault == "drop"
    emulator.set_faults(Faults())
    assert client.get_pool("p").id == "p"


def test_slow_responses(client: BatchClient, emulator: BatchEmulator) -> None:
    emulator.set_faults(Faults(slow_rate=1.0, slow_seconds=0.5))
    # the answer is held back: a client that waits less than that for it gets none ...
    with pytest.raises(ServiceResponseError):
        list(client.list_pools(read_timeout=0.1, retry_total=0))
    # ... one that waits gets it
    assert list(client.list_pools()) == []
    log = wait_until(lambda: len(emulator.request_log) == 2 and emulator.request_log, what="both answers")
    assert [(r.operation, r.status, r.fault) for r in log] == [("Pools_ListPools", 200, "slow")] * 2


class FakeCredential:
    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken("fake-token", 4_102_444_800)


def test_tls_with_bearer_token(tmp_path: Path) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    certfile, keyfile, cafile = tmp_path / "cert.pem", tmp_path / "key.pem", tmp_path / "ca.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(certfile))
    cert.private_key_pem.write_to_path(str(keyfile))
    ca.cert_pem.write_to_path(str(cafile))
    with BatchEmulator(tls=(str(certfile), str(keyfile)), workdir=tmp_path / "b") as emu:
        assert emu.endpoint.startswith("https://")
        client = BatchClient(emu.endpoint, FakeCredential(), connection_verify=str(cafile))  # type: ignore[arg-type]
        assert list(client.list_pools()) == []
        client.create_pool(
            bm.BatchPoolCreateOptions(id="p", vm_size="standard_d2s_v3", target_dedicated_nodes=0)
        )
        assert client.get_pool("p").id == "p"
        client.close()
