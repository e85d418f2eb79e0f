"""Fixtures for the Batch emulator tests: the emulator, a BatchClient, a real Azurite."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from azure.batch import BatchClient
from azure.batch import models as bm
from azure.core.credentials import AzureNamedKeyCredential
from azure.storage.blob import BlobServiceClient, ContainerSasPermissions, generate_container_sas

from batch_transcode.testing._batch_emulator import BatchEmulator

AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
AZURITE_ACCOUNT = "devstoreaccount1"


def _azurite_exe() -> str:
    candidates = [
        os.environ.get("AZURITE_BLOB", ""),
        "/tmp/az/node_modules/.bin/azurite-blob",
        "azurite-blob",
    ]
    for c in candidates:
        if c and (Path(c).exists() or shutil.which(c)):
            return c if Path(c).exists() else str(shutil.which(c))
    pytest.fail(
        "Azurite is not installed: run `npm install azurite@3.37.0` in /tmp/az "
        "or set AZURITE_BLOB to the azurite-blob executable"
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Azurite:
    def __init__(self, port: int) -> None:
        self.port = port
        self.blob_url = f"http://127.0.0.1:{port}/{AZURITE_ACCOUNT}"
        self.connection_string = (
            "DefaultEndpointsProtocol=http;"
            f"AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};BlobEndpoint={self.blob_url};"
        )

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
    exe = _azurite_exe()
    port = _free_port()
    location = tmp_path_factory.mktemp("azurite")
    proc = subprocess.Popen(
        [exe, "--skipApiVersionCheck", "--loose", "--location", str(location),
         "--blobHost", "127.0.0.1", "--blobPort", str(port), "--silent"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                err = proc.stderr.read().decode() if proc.stderr else ""
                pytest.fail(f"Azurite exited at start-up: {err}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail("Azurite did not start listening within 30 s")
                time.sleep(0.1)
        yield Azurite(port)
    finally:
        if proc.stderr is not None:
            proc.stderr.close()
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[BatchEmulator]:
    with BatchEmulator(workdir=tmp_path / "batch") as emu:
        yield emu


def _make_client(emu: BatchEmulator, key: str | None = None, **kwargs: object) -> BatchClient:
    return BatchClient(emu.endpoint, AzureNamedKeyCredential(emu.account, key or emu.key), **kwargs)  # type: ignore[arg-type]


@pytest.fixture
def client(emulator: BatchEmulator) -> Iterator[BatchClient]:
    c = _make_client(emulator, retry_backoff_factor=0.01)
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


def _wait_until(predicate: Callable[[], object], timeout: float = 20.0, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(interval)


class Helpers:
    """Small helpers for the tests (fixtures, since tests import no conftest)."""

    make_client = staticmethod(_make_client)
    pool_options = staticmethod(_pool_options)
    wait_until = staticmethod(_wait_until)
    vm = VM


@pytest.fixture
def h() -> type[Helpers]:
    return Helpers
