"""Intercept mode: a program written for the public cloud (public endpoint names,
DefaultAzureCredential, no batch_transcode import) runs offline unchanged."""

from __future__ import annotations

import ast
import http.client
from collections.abc import Iterator
from pathlib import Path

import pytest
from azure.batch import BatchClient
from azure.core.credentials import AzureNamedKeyCredential
from azure.core.rest import HttpRequest
from azure.storage.blob import BlobServiceClient

from batch_transcode.testing import OfflineAzure
from helpers import NOTHING_LEFT, MediaFactory, env_without_azure, run_python

pytestmark = pytest.mark.azure

APP = Path(__file__).resolve().parents[2] / "examples" / "public_cloud_app.py"


@pytest.fixture(scope="module")
def keyless() -> Iterator[OfflineAzure]:
    with OfflineAzure(intercept=True, entra_id=True) as oa:
        yield oa


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found = {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    return found | {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}


def _connect(proxy_url: str, target: str) -> int:
    """The status the proxy answers ``CONNECT target``."""
    host, port = proxy_url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request("CONNECT", target)
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def test_a_public_cloud_program_runs_keyless_through_intercept(
    keyless: OfflineAzure, tmp_path: Path, make_media: MediaFactory
) -> None:
    videos = [make_media(tmp_path / "in" / name) for name in ("talk one.mp4", "talk-two.mp4")]
    env = env_without_azure() | keyless.env
    assert env["AZURE_BATCH_ENDPOINT"] == "https://devbatch.westeurope.batch.azure.com"
    assert "AZURE_BATCH_ACCESS_KEY" not in env and "AZURE_STORAGE_CONNECTION_STRING" not in env
    assert not any(m.startswith("batch_transcode") for m in _imports(APP))
    before = len(keyless.batch.request_log)
    proc = run_python(APP, tmp_path / "out", *videos, env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    mp3s = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert mp3s == ["talk one.mp3", "talk-two.mp3"]
    assert all((tmp_path / "out" / name).stat().st_size > 1000 for name in mp3s)
    # it really went through the emulator, keyless, and cleaned up after itself
    ops = [r.operation for r in keyless.batch.request_log[before:]]
    assert {"Pools_CreatePool", "Jobs_CreateJob", "Tasks_CreateTaskCollection"} <= set(ops)
    assert keyless.identity_endpoint is not None and keyless.identity_endpoint.issued >= 2
    assert keyless.leaks(timeout=30) == NOTHING_LEFT


def test_every_other_host_is_refused(keyless: OfflineAzure) -> None:
    proxy = keyless.intercept_proxy
    assert proxy is not None
    assert proxy.hosts == {"devstoreaccount1.blob.core.windows.net", "devbatch.westeurope.batch.azure.com"}
    refused = proxy.refused
    for target in (
        "example.com:443",
        "login.microsoftonline.com:443",
        "otheraccount.blob.core.windows.net:443",
        "devbatch.eastus.batch.azure.com:443",
        "devstoreaccount1.blob.core.windows.net:80",
    ):
        assert _connect(proxy.url, target) == 403, target
    assert proxy.refused == refused + 5
    # a program that reaches anywhere else fails, and says why
    code = (
        "import requests\n"
        "try:\n"
        "    requests.get('https://example.com/', timeout=10)\n"
        "except requests.exceptions.ProxyError as exc:\n"
        "    print('refused', exc)\n"
    )
    proc = run_python("-c", code, env=env_without_azure() | keyless.env)
    assert proc.stdout.startswith("refused") and "403" in proc.stdout, proc.stdout + proc.stderr


def test_shared_key_programs_get_public_names_too(tmp_path: Path) -> None:
    with OfflineAzure(intercept=True, region="eastus") as oa:
        env = oa.env
        assert env["AZURE_BATCH_ENDPOINT"] == "https://devbatch.eastus.batch.azure.com"
        assert env["AZURE_STORAGE_CONNECTION_STRING"].startswith("DefaultEndpointsProtocol=https;")
        assert "EndpointSuffix=core.windows.net" in env["AZURE_STORAGE_CONNECTION_STRING"]
        assert env["SSL_CERT_FILE"] == env["REQUESTS_CA_BUNDLE"] == str(oa.ca_bundle)
        options = {"proxies": {"https": env["HTTPS_PROXY"]}, "connection_verify": env["REQUESTS_CA_BUNDLE"]}
        with BlobServiceClient.from_connection_string(
            env["AZURE_STORAGE_CONNECTION_STRING"], retry_total=0, **options
        ) as blobs:
            assert blobs.url == "https://devstoreaccount1.blob.core.windows.net/"
            blobs.create_container("public")
            blobs.get_blob_client("public", "a.txt").upload_blob(b"offline")
            assert oa.containers() == ["public"]  # it is Azurite's
            assert blobs.get_blob_client("public", "a.txt").download_blob().readall() == b"offline"
            blobs.delete_container("public")
        credential = AzureNamedKeyCredential(env["AZURE_BATCH_ACCOUNT"], env["AZURE_BATCH_ACCESS_KEY"])
        with BatchClient(env["AZURE_BATCH_ENDPOINT"], credential, retry_total=0, **options) as batch:
            assert list(batch.list_pools()) == []
            # the emulator answers with its loopback URL; the client sees the public one
            answer = batch.send_request(HttpRequest("GET", "/pools?api-version=2025-06-01"))
            assert answer.status_code == 200
            assert (
                answer.json()["odata.metadata"] == "https://devbatch.eastus.batch.azure.com/$metadata#pools"
            )
        assert oa.batch.endpoint.encode() in oa.batch.request_log[-1].response_body
