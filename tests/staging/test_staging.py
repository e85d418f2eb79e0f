"""Staging against a real Azurite: containers, uploads, SAS permissions, atomic downloads."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from azure.core import exceptions as az
from azure.storage.blob import BlobClient, BlobServiceClient, ContainerClient

from batch_transcode import AzureConfig, RetryPolicy, TeardownError
from batch_transcode._azure._clients import make_blob_service_client
from batch_transcode._azure.cleanup import delete_container
from batch_transcode._azure.containers import Containers, create_containers
from batch_transcode._azure.names import SessionNames, blob_path, output_blobs
from batch_transcode._azure.staging import StagedInput, Staging, UploadLedger
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


POLICY = RetryPolicy(wait_initial=0.01, wait_max=0.05)


def _staging(oa: OfflineAzure, **overrides: Any) -> Staging:
    """A staging of a new session on ``oa`` (``overrides`` go to its config); its
    containers are not made."""
    config = oa.config(retry=POLICY, upload_concurrency=8, download_concurrency=8, **overrides)
    service, key = make_blob_service_client(config)
    _open_clients.append(service)
    names = SessionNames(session_id=_session_id(), created_at=dt.datetime.now(dt.UTC))
    return Staging.connect(
        service,
        Containers.of(config, names),
        expiry=dt.datetime.now(dt.UTC) + dt.timedelta(hours=1),
        account_key=key,
        node_identity=None,
        upload_concurrency=config.upload_concurrency,
        download_concurrency=config.download_concurrency,
    )


def _session_of(staging: Staging) -> SessionNames:
    session_id = staging.containers.output.removesuffix("-out")
    return SessionNames(session_id=session_id, created_at=dt.datetime.now(dt.UTC))


def _with_containers(oa: OfflineAzure, **overrides: Any) -> tuple[Staging, Teardown]:
    """A staging whose containers are created, and the teardown that deletes them."""
    staging = _staging(oa, **overrides)
    teardown = Teardown()
    create_containers(staging.containers, staging.service, _session_of(staging), POLICY, teardown)
    return staging, teardown


def _delete_containers(staging: Staging) -> None:
    for name in staging.containers.owned:
        delete_container(staging.service, name, POLICY)


def _files(root: Path, names: list[str], size: int = 1000) -> list[WorkItem]:
    paths = []
    for i, name in enumerate(names):
        path = root / "src" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(hashlib.sha256(name.encode()).digest() * (size // 32) + bytes([i]))
        paths.append(path)
    return plan_work(paths, root / "out", ["mp3"])


@pytest.fixture
def oa(offline_azure: OfflineAzure) -> OfflineAzure:
    return offline_azure


def test_containers_created_with_metadata_and_deleted_by_teardown(oa: OfflineAzure) -> None:
    staging, teardown = _with_containers(oa)
    inspect = oa.blob_service_client()
    session = _session_of(staging)
    names = {staging.containers.input, staging.containers.output}
    assert names <= set(oa.containers())
    created = set()
    for name in names:
        assert name.startswith(session.session_id) and len(name) <= 63 and name == name.lower()
        meta = inspect.get_container_client(name).get_container_properties().metadata
        assert meta["createdby"] == "batch-transcode"
        assert meta["session"] == session.session_id
        created.add(meta["createdat"])
    assert len(created) == 1 and dt.datetime.fromisoformat(created.pop().replace("Z", "+00:00"))
    assert teardown.pending() == [
        f"container {staging.containers.output}",
        f"container {staging.containers.input}",
    ]
    _delete_containers(staging)  # gone before teardown runs: teardown still succeeds
    teardown.close()
    assert not names & set(oa.containers())
    _delete_containers(staging)  # idempotent


def test_hostile_names_round_trip_through_upload_and_sas(oa: OfflineAzure, tmp_path: Path) -> None:
    items = _files(tmp_path, HOSTILE)
    staging, teardown = _with_containers(oa)
    try:
        staged = staging.upload_inputs(items, UploadLedger())
        assert [s.index for s in staged] == [i.index for i in items]
        assert all(s.uploaded for s in staged)
        assert sum(s.size for s in staged) == sum(i.source.stat().st_size for i in items)
        container = oa.blob_service_client().get_container_client(staging.containers.input)
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
    assert not any(c.startswith(_session_of(staging).session_id) for c in oa.containers())


def test_persistent_input_container_second_run_uploads_nothing(oa: OfflineAzure, tmp_path: Path) -> None:
    items = _files(tmp_path, [f"clip{i}.mp4" for i in range(12)])
    first, t1 = _with_containers(oa, input_container="bt-persistent-inputs")
    assert all(s.uploaded for s in first.upload_inputs(items, UploadLedger()))
    t1.close()
    assert "bt-persistent-inputs" in oa.containers()  # kept

    items[0].source.write_bytes(b"changed")  # one input changed since
    second, t2 = _with_containers(oa, input_container="bt-persistent-inputs")
    staged = second.upload_inputs(items, UploadLedger())
    t2.close()
    assert [s.uploaded for s in staged] == [True] + [False] * 11
    assert staged[0].size == len(b"changed")

    third, t3 = _with_containers(oa, input_container="bt-persistent-inputs")
    ledger = UploadLedger()
    again = [*third.upload_inputs(items, ledger), *third.upload_inputs(items, ledger)]
    t3.close()
    assert not any(s.uploaded for s in again)  # twice in one session: still nothing
    oa.blob_service_client().delete_container("bt-persistent-inputs")


def test_input_sas_reads_but_cannot_write(oa: OfflineAzure, tmp_path: Path) -> None:
    items = _files(tmp_path, ["a.mp4"])
    staging, teardown = _with_containers(oa)
    try:
        (staged,) = staging.upload_inputs(items, UploadLedger())
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
        assert base.endswith("/" + staging.containers.output)
    finally:
        teardown.close()


def _put_outputs(staging: Staging, items: list[WorkItem], service: BlobServiceClient) -> None:
    container = service.get_container_client(staging.containers.output)
    for item in items:
        container.upload_blob(
            output_blobs(item.relative_outputs)[0], b"mp3:" + item.relative_outputs[0].encode()
        )


def test_download_outputs_atomic_with_missing_blob(oa: OfflineAzure, tmp_path: Path) -> None:
    items = _files(tmp_path, HOSTILE)
    staging, teardown = _with_containers(oa)
    try:
        _put_outputs(staging, items[:-1], oa.blob_service_client())
        missing = items[-1]
        missing.outputs[0].parent.mkdir(parents=True, exist_ok=True)
        missing.outputs[0].write_bytes(b"previous")
        result = {item.index: staging.download(item) for item in items}
        for item in items[:-1]:
            assert result[item.index].ok and result[item.index].size > 0
            assert item.outputs[0].read_bytes() == b"mp3:" + item.relative_outputs[0].encode()
        assert not result[missing.index].ok
        assert "not found" in (result[missing.index].error or "")
        assert missing.outputs[0].read_bytes() == b"previous"
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
    result = {item.index: staging.download(item) for item in items}
    assert not any(result[i.index].ok for i in items)
    assert all("sig=" not in (result[i.index].error or "") for i in items)
    assert not any(i.outputs[0].exists() for i in items)
    assert partial_files(tmp_path) == []
    oa.set_storage_faults(None)
    teardown.close()


def test_uploads_survive_injected_503s_and_drops(
    offline_azure_factory: Callable[..., OfflineAzure], tmp_path: Path
) -> None:
    oa = offline_azure_factory(storage_faults=StorageFaults(failure_rate=0.2, seed=7))
    items = _files(tmp_path, [f"f{i}.mp4" for i in range(20)], size=64 * 1024)
    staging, teardown = _with_containers(oa)
    staged = staging.upload_inputs(items, UploadLedger())
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
        ledger = UploadLedger()
        url = staging.upload_file(ledger, tool, ".bt-tools/ffmpeg")
        with BlobClient.from_blob_url(url) as blob:
            assert blob.download_blob().readall() == tool.read_bytes()
            etag = blob.get_blob_properties().etag
            staging.upload_file(ledger, tool, ".bt-tools/ffmpeg")  # identical: not uploaded again
            assert blob.get_blob_properties().etag == etag
    finally:
        teardown.close()


def test_keep_outputs_leaves_the_output_container(oa: OfflineAzure) -> None:
    staging, teardown = _with_containers(oa, keep_outputs_in_storage=True)
    assert staging.upload_concurrency == 8
    assert teardown.pending() == [f"container {staging.containers.input}"]
    teardown.close()
    assert staging.containers.output in oa.containers()
    delete_container(staging.service, staging.containers.output, POLICY)


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
    _delete_containers(staging)


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


def test_repr_names_the_containers_and_no_secret(oa: OfflineAzure) -> None:
    staging = _staging(oa)
    text = repr(staging)
    assert staging.containers.input in text and staging.containers.output in text
    assert staging.account_key is not None and staging.account_key not in text
    assert "sig=" not in text and "AccountKey" not in text


def test_uploads_run_a_bounded_window_ahead_of_their_results(tmp_path: Path) -> None:
    """Inputs are handed to the upload threads a few at a time (four per worker ahead of
    the results read), in order, not all at once: a run of N files never holds N pending
    calls; after a failure no call beyond the window starts."""
    from batch_transcode._azure.staging import _map

    items = [
        WorkItem(
            index=i, source=tmp_path / f"{i}.wav", relative_source=f"{i}.wav", outputs=()
        )
        for i in range(200)
    ]
    started: list[int] = []

    def fn(item: WorkItem) -> int:
        started.append(item.index)
        return item.index

    seen = []
    for k, value in enumerate(_map(fn, items, 2, "bt-test")):
        seen.append(value)
        assert len(started) <= k + 1 + 4 * 2
    assert seen == list(range(200))

    started.clear()

    def failing(item: WorkItem) -> int:
        started.append(item.index)
        if item.index == 5:
            raise OSError("disk gone")
        return item.index

    with pytest.raises(OSError, match="disk gone"):
        list(_map(failing, items, 2, "bt-test"))
    assert max(started) < 5 + 1 + 4 * 2
