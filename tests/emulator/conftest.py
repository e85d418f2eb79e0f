"""Fixtures for the Batch emulator tests: the emulator, a BatchClient, a real Azurite."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from azure.batch import BatchClient
from azure.batch import models as bm
from azure.storage.blob import BlobServiceClient, ContainerSasPermissions, generate_container_sas

from batch_transcode.testing._azurite import AZURITE_ACCOUNT, AZURITE_KEY, AzuriteProcess
from batch_transcode.testing._batch_emulator import BatchEmulator
from helpers import azurite_connection_string, batch_client, wait_until


class Azurite:
    def __init__(self, port: int) -> None:
        self.port = port
        self.blob_url = f"http://127.0.0.1:{port}/{AZURITE_ACCOUNT}"
        self.connection_string = azurite_connection_string(port)

    def service(self) -> BlobServiceClient:
        return BlobServiceClient.from_connection_string(self.connection_string, retry_total=0)

    def container_sas_url(
        self, container: str, *, read: bool = False, write: bool = False, listing: bool = False
    ) -> str:
        sas = generate_container_sas(
            AZURITE_ACCOUNT,
            container,
            account_key=AZURITE_KEY,
            permission=ContainerSasPermissions(read=read, write=write, create=write, list=listing),
            expiry=datetime.now(UTC) + timedelta(hours=1),
        )
        return f"{self.blob_url}/{container}?{sas}"


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Azurite]:
    process = AzuriteProcess(tmp_path_factory.mktemp("azurite"))
    process.start()
    try:
        yield Azurite(process.port)
    finally:
        process.stop()


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[BatchEmulator]:
    with BatchEmulator(workdir=tmp_path / "batch") as emu:
        yield emu


@pytest.fixture
def client(emulator: BatchEmulator) -> Iterator[BatchClient]:
    c = batch_client(emulator, retry_backoff_factor=0.01)
    yield c
    c.close()


VM = bm.VirtualMachineConfiguration(
    image_reference=bm.BatchVmImageReference(publisher="canonical", offer="ubuntu-24_04-lts", sku="server"),
    node_agent_sku_id="batch.node.ubuntu 24.04",
)


def _pool_options(pool_id: str, **kwargs: object) -> bm.BatchPoolCreateOptions:
    kwargs.setdefault("target_dedicated_nodes", 1)
    return bm.BatchPoolCreateOptions(
        id=pool_id, vm_size="standard_d2s_v3", virtual_machine_configuration=VM, **kwargs
    )  # type: ignore[arg-type]


class Helpers:
    """Small helpers for the tests (fixtures, since tests import no conftest)."""

    make_client = staticmethod(batch_client)
    pool_options = staticmethod(_pool_options)
    wait_until = staticmethod(wait_until)
    vm = VM


@pytest.fixture
def h() -> type[Helpers]:
    return Helpers
