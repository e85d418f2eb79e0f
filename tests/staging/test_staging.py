"""Staging against a real Azurite: containers, uploads, SAS permissions, atomic downloads."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from azure.core import exceptions as az
from azure.storage.blob import BlobClient, BlobServiceClient, ContainerClient

from batch_transcode import AzureConfig, RetryPolicy, TeardownError
from batch_transcode._azure.staging import (
    StagedInput,
    Staging,
    blob_path,
    make_blob_service_client,
)
from batch_transcode._naming import WorkItem, plan_work
from batch_transcode._redact import redact
from batch_transcode._teardown import Teardown
from batch_transcode.testing import OfflineAzure, StorageFaults
from helpers import partial_files

pytestmark = pytest.mark.azure

HOSTILE = [
    "with space.mp4",
    'it\'s "quoted".mp4',
    "$(touch x).mp4",
    "new\nline.mp4",
    "ünïcødé 日本.mp4",
    "percent%20sign.mp4",
    "hash#and?query.mp4",
    "day1/talk.mp4",
    "day2/talk.mp4",
]

_counter = iter(range(10**6))
_open_clients: list[BlobServiceClient] = []


@pytest.fixture(autouse=True)
def _close_clients() -> object:
    yield
    while _open_clients:
        _open_clients.pop().close()


def _session_id() -> str:
    return f"bt-20260101t0000-{next(_counter):08x}"


def _staging(oa: OfflineAzure, **kwargs: object) -> Staging:
    config = oa.config(retry=RetryPolicy(wait_initial=0.01, wait_max=0.05))
    service, key = make_blob_service_client(config)
    _open_clients.append(service)
    options: dict[str, object] = {
        "session_id": _session_id(),
        "prefix": "bt",
        "expiry": dt.datetime.now(dt.UTC) + dt.timedelta(hours=1),
        "account_key": key,
        "concurrency": 8,
    }
    options.update(kwargs)
    return Staging(service, **options)  # type: ignore[arg-type]


def _with_containers(oa: OfflineAzure, **kwargs: object) -> tuple[Staging, Teardown]:
    """A staging whose containers are created, and the teardown that deletes them."""
    staging = _staging(oa, **kwargs)
    teardown = Teardown()
    staging.create_containers(teardown)
    return staging, teardown


def _files(root: Path, names: list[str], size: int = 1000) -> list[WorkItem]:
    paths = []
    for i, name in enumerate(names):
        path = root / "src" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(hashlib.sha256(name.encode()).digest() * (size // 32) + bytes([i]))
        paths.append(path)
    return plan_work(paths, root / "out", "mp3")


@pytest.fixture
def oa(offline_azure: OfflineAzure) -> OfflineAzure:
    return offline_azure


def test_containers_created_with_metadata_and_deleted_by_teardown(oa: OfflineAzure) -> None:
    staging, teardown = _with_containers(oa)
    inspect = oa.blob_service_client()
    names = {staging.input_container_name, staging.output_container_name}
    assert names <= set(oa.containers())
    for name in names:
        assert name.startswith(staging.session_id) and len(name) <= 63 and name == name.lower()
        meta = inspect.get_container_client(name).get_container_properties().metadata
        assert meta["createdby"] == "batch-transcode"
        assert meta["session"] == staging.session_id
        assert dt.datetime.fromisoformat(meta["createdat"].replace("Z", "+00:00"))
    assert teardown.pending() == [
        f"container {staging.output_container_name}",
        f"container {staging.input_container_name}",
    ]
    staging.delete_containers()  # gone before teardown runs: teardown still succeeds
    teardown.close()
    assert not names & set(oa.containers())
    staging.delete_containers()  # idempotent


def test_container_names_from_odd_session_ids(oa: OfflineAzure) -> None:
    staging = _staging(oa, session_id="Weird__Session--ID" + "x" * 80, prefix="bt")
    for name in (staging.input_container_name, staging.output_container_name):
        assert 3 <= len(name) <= 63
        assert name[0].isalnum() and "--" not in name and name == name.lower()


def test_hostile_names_round_trip_through_upload_and_sas(oa: OfflineAzure, tmp_path: Path) -> None:
    items = _files(tmp_path, HOSTILE)
    staging, teardown = _with_containers(oa)
    try:
        staged = staging.upload_inputs(items)
        assert [s.index for s in staged] == [i.index for i in items]
        assert all(s.uploaded for s in staged)
        assert staging.bytes_uploaded == sum(i.source.stat().st_size for i in items)
        container = oa.blob_service_client().get_container_client(staging.input_container_name)
        assert sorted(b.name for b in container.list_blobs()) == sorted(
            "inputs/" + blob_path(n) for n in HOSTILE
        )
        for item, s in zip(items, staged, strict=True):
            assert s.blob_name == "inputs/" + blob_path(item.relative_source)
            with BlobClient.from_blob_url(s.sas_url) as blob:
                assert blob.download_blob().readall() == item.source.read_bytes()
                props = blob.get_blob_properties()
            assert (
                bytes(props.content_settings.content_md5)
                == hashlib.md5(item.source.read_bytes(), usedforsecurity=False).digest()
            )
            assert "sig=" in s.sas_url and "REDACTED" in repr(s)
            sig = s.sas_url.split("sig=")[1].split("&")[0]
            assert sig not in repr(s)
    finally:
        teardown.close()
    assert not any(c.startswith(staging.session_id) for c in oa.containers())


def test_persistent_input_container_second_run_uploads_nothing(oa: OfflineAzure, tmp_path: Path) -> None:
    items = _files(tmp_path, [f"clip{i}.mp4" for i in range(12)])
    first, t1 = _with_containers(oa, input_container="bt-persistent-inputs")
    first.upload_inputs(items)
    t1.close()
    assert first.bytes_uploaded > 0 and first.uploads_skipped == 0
    assert "bt-persistent-inputs" in oa.containers()  # kept

    items[0].source.write_bytes(b"changed")  # one input changed since
    second, t2 = _with_containers(oa, input_container="bt-persistent-inputs")
    staged = second.upload_inputs(items)
    t2.close()
    assert second.bytes_uploaded == len(b"changed")
    assert second.uploads_skipped == 11
    assert [s.uploaded for s in staged] == [True] + [False] * 11

    third, t3 = _with_containers(oa, input_container="bt-persistent-inputs")
    third.upload_inputs(items)
    third.upload_inputs(items)  # twice in one session: still nothing
    t3.close()
    assert third.bytes_uploaded == 0 and third.uploads_skipped == 24
    oa.blob_service_client().delete_container("bt-persistent-inputs")


def test_input_sas_reads_but_cannot_write(oa: OfflineAzure, tmp_path: Path) -> None:
    items = _files(tmp_path, ["a.mp4"])
    staging, teardown = _with_containers(oa)
    try:
        (staged,) = staging.upload_inputs(items)
        with BlobClient.from_blob_url(staged.sas_url, retry_total=0) as blob:
            assert blob.download_blob().readall() == items[0].source.read_bytes()
            with pytest.raises(az.HttpResponseError) as info:
                blob.upload_blob(b"overwrite", overwrite=True)
            assert info.value.status_code == 403
            with pytest.raises(az.HttpResponseError):
                blob.delete_blob()
    finally:
        teardown.close()


def test_output_sas_creates_and_writes_but_cannot_read_or_list(oa: OfflineAzure) -> None:
    staging, teardown = _with_containers(oa)
    try:
        url = staging.output_container_sas_url()
        base, sas = url.split("?", 1)
        with ContainerClient.from_container_url(url, retry_total=0) as container:
            container.upload_blob("outputs/x.mp3", b"data")
            container.upload_blob("outputs/x.mp3", b"data2", overwrite=True)
            with pytest.raises(az.HttpResponseError) as info:
                list(container.list_blobs())
            assert info.value.status_code == 403
            with pytest.raises(az.HttpResponseError) as info:
                container.download_blob("outputs/x.mp3").readall()
            assert info.value.status_code == 403
            with pytest.raises(az.HttpResponseError):
                container.delete_blob("outputs/x.mp3")
        assert staging.read_output_blob("outputs/x.mp3") == b"data2"
        assert staging.read_output_blob("outputs/missing") is None
        assert "sig=REDACTED" in redact(url) and sas.split("sig=")[1] not in redact(url)
        assert base.endswith("/" + staging.output_container_name)
    finally:
        teardown.close()


def _put_outputs(staging: Staging, items: list[WorkItem], service: BlobServiceClient) -> None:
    container = service.get_container_client(staging.output_container_name)
    for item in items:
        container.upload_blob(staging.output_blob_name(item), b"mp3:" + item.relative_output.encode())


def test_download_outputs_atomic_with_missing_blob(oa: OfflineAzure, tmp_path: Path) -> None:
    items = _files(tmp_path, HOSTILE)
    staging, teardown = _with_containers(oa)
    try:
        _put_outputs(staging, items[:-1], oa.blob_service_client())
        missing = items[-1]
        missing.output.parent.mkdir(parents=True, exist_ok=True)
        missing.output.write_bytes(b"previous")
        result = staging.download_outputs(items)
        assert set(result) == {i.index for i in items}
        for item in items[:-1]:
            assert result[item.index].status == "downloaded"
            assert item.output.read_bytes() == b"mp3:" + item.relative_output.encode()
        assert result[missing.index].status == "failed"
        assert "not found" in (result[missing.index].error or "")
        assert missing.output.read_bytes() == b"previous"
        assert partial_files(tmp_path) == []
    finally:
        teardown.close()


def test_download_failures_leave_no_partial_files(
    offline_azure_factory: Callable[..., OfflineAzure], tmp_path: Path
) -> None:
    oa = offline_azure_factory(storage_faults=StorageFaults())
    items = _files(tmp_path, ["a.mp4", "b/c.mp4"])
    staging, teardown = _with_containers(oa)
    _put_outputs(staging, items, oa.blob_service_client())
    # 503s only: after a dropped connection azure-storage-blob can leave a streamed
    # download's socket unclosed (a ResourceWarning), which is the SDK's, not ours
    oa.set_storage_faults(StorageFaults(failure_rate=1.0, seed=1, drop_share=0.0))
    result = staging.download_outputs(items)
    assert all(result[i.index].status == "failed" for i in items)
    assert all("sig=" not in (result[i.index].error or "") for i in items)
    assert not any(i.output.exists() for i in items)
    assert partial_files(tmp_path) == []
    oa.set_storage_faults(None)
    teardown.close()


def test_uploads_survive_injected_503s_and_drops(
    offline_azure_factory: Callable[..., OfflineAzure], tmp_path: Path
) -> None:
    oa = offline_azure_factory(storage_faults=StorageFaults(failure_rate=0.2, seed=7))
    items = _files(tmp_path, [f"f{i}.mp4" for i in range(20)], size=64 * 1024)
    staging, teardown = _with_containers(oa)
    staged = staging.upload_inputs(items)
    proxy = oa.storage_proxy
    assert proxy is not None and proxy.failures_injected + proxy.connections_dropped > 0
    oa.set_storage_faults(None)
    for item, s in zip(items, staged, strict=True):
        with BlobClient.from_blob_url(s.sas_url) as blob:
            assert blob.download_blob().readall() == item.source.read_bytes()
    teardown.close()


def test_upload_file_returns_a_read_sas(oa: OfflineAzure, tmp_path: Path) -> None:
    tool = tmp_path / "ffmpeg"
    tool.write_bytes(os.urandom(300_000))
    staging, teardown = _with_containers(oa)
    try:
        url = staging.upload_file(tool, ".bt-tools/ffmpeg")
        with BlobClient.from_blob_url(url) as blob:
            assert blob.download_blob().readall() == tool.read_bytes()
        staging.upload_file(tool, ".bt-tools/ffmpeg")
        assert staging.uploads_skipped == 1
    finally:
        teardown.close()


def test_config_form_and_keep_outputs(oa: OfflineAzure) -> None:
    config = oa.config(keep_outputs_in_storage=True, upload_concurrency=3)
    service, key = make_blob_service_client(config)
    _open_clients.append(service)
    staging = Staging.from_config(
        config, service, account_key=key, session_id=_session_id(), expiry=dt.datetime.now(dt.UTC)
    )
    assert staging.concurrency == 3
    teardown = Teardown()
    staging.create_containers(teardown)
    assert teardown.pending() == [f"container {staging.input_container_name}"]
    teardown.close()
    assert staging.output_container_name in oa.containers()
    staging.delete_containers()


def test_teardown_reports_a_container_it_cannot_delete(
    offline_azure_factory: Callable[..., OfflineAzure],
) -> None:
    oa = offline_azure_factory(storage_faults=StorageFaults())
    staging, teardown = _with_containers(oa)
    oa.set_storage_faults(StorageFaults(failure_rate=1.0))
    with pytest.raises(TeardownError) as info:
        teardown.close()
    assert len(info.value.remaining) == 2
    oa.set_storage_faults(None)
    staging.delete_containers()


def test_make_blob_service_client_variants() -> None:
    config = AzureConfig(
        batch_endpoint="https://acct.westeurope.batch.azure.com",
        storage_account="mystore",
        storage_key="a2V5",
    )
    client, key = make_blob_service_client(config)
    assert key == "a2V5" and client.url.startswith("https://mystore.blob.core.windows.net")
    client.close()

    class Token:
        def get_token(self, *scopes: str, **kwargs: object) -> object:
            raise AssertionError("not called")

    config = AzureConfig(
        batch_endpoint="https://acct.westeurope.batch.azure.com",
        storage_account="mystore",
        storage_endpoint="https://custom.example/",
        credential=Token(),  # type: ignore[arg-type]
    )
    client, key = make_blob_service_client(config)
    assert key is None and client.url.startswith("https://custom.example")
    client.close()


def test_redact() -> None:
    url = "https://a.blob.core.windows.net/c/b?sv=2024&sig=abc%2Bdef%3D&se=x"
    assert redact(url) == "https://a.blob.core.windows.net/c/b?sv=2024&sig=REDACTED&se=x"
    assert redact("https://x/y?SIG=1") == "https://x/y?SIG=REDACTED"
    s = StagedInput(index=0, blob_name="b", sas_url=url, uploaded=True, size=1)
    assert "abc" not in repr(s)
