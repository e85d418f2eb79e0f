"""Keyless for other processes: the managed-identity endpoint of OfflineAzure(entra_id=True)
gives another process's DefaultAzureCredential() tokens, and OfflineAzure.roles decide."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from batch_transcode.testing import OfflineAzure
from batch_transcode.testing._entra import BATCH_AUDIENCE, check_token

pytestmark = pytest.mark.azure

#: A program that knows nothing of batch_transcode: DefaultAzureCredential and the
#: environment, as a program deployed with a managed identity is written.
CHILD = """
import os, sys
from azure.batch import BatchClient
from azure.core.exceptions import HttpResponseError
from azure.identity import DefaultAzureCredential
from azure.storage.blob import BlobServiceClient

credential = DefaultAzureCredential()
try:
    batch = BatchClient(os.environ["AZURE_BATCH_ENDPOINT"], credential)
    print("pools", len(list(batch.list_pools())))
    blobs = BlobServiceClient(os.environ["AZURE_STORAGE_ENDPOINT"], credential)
    blobs.get_container_client(sys.argv[1]).upload_blob("hello.txt", b"hello")
    print("uploaded")
except HttpResponseError as exc:
    print("refused", exc.status_code, getattr(exc, "error_code", None) or exc.error.code)
"""


@pytest.fixture(scope="module")
def entra() -> Iterator[OfflineAzure]:
    with OfflineAzure(entra_id=True) as oa:
        yield oa


def _child_env(oa: OfflineAzure) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AZURE_", "IDENTITY_", "MSI_"))}
    env.update(oa.env)
    return env


def _ask(url: str, header: str | None) -> tuple[int, dict[str, str]]:
    request = urllib.request.Request(f"{url}?resource={BATCH_AUDIENCE}&api-version=2019-08-01")  # noqa: S310
    if header is not None:
        request.add_header("X-IDENTITY-HEADER", header)
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310 - a loopback http URL
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_the_endpoint_needs_the_runs_secret_header(entra: OfflineAzure) -> None:
    endpoint = entra.identity_endpoint
    assert endpoint is not None
    env = entra.env
    assert (
        env["IDENTITY_ENDPOINT"].startswith("http://127.0.0.1:") and env["IDENTITY_HEADER"] == endpoint.header
    )
    assert endpoint.header not in repr(endpoint) and endpoint.header not in repr(entra)
    assert _ask(endpoint.url, None)[0] == 401
    assert _ask(endpoint.url, "guessed")[0] == 401
    status, doc = _ask(endpoint.url, endpoint.header)
    assert status == 200 and doc["token_type"] == "Bearer" and doc["resource"] == BATCH_AUDIENCE
    claims = check_token(doc["access_token"], [BATCH_AUDIENCE])
    assert claims["oid"] == entra.credential.principal_id
    assert int(doc["expires_on"]) > 0
    assert endpoint.refused == 2
    with OfflineAzure(entra_id=True) as other:  # another run, another secret
        assert other.env["IDENTITY_HEADER"] != endpoint.header


def test_another_process_runs_keyless_with_default_azure_credential(
    entra: OfflineAzure, tmp_path: Path
) -> None:
    entra.blob_service_client().create_container("child")
    script = tmp_path / "child.py"
    script.write_text(CHILD)

    def run() -> str:
        done = subprocess.run(
            [sys.executable, str(script), "child"],
            env=_child_env(entra),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    assert run().split() == ["pools", "0", "uploaded"]
    blob = entra.blob_service_client().get_blob_client("child", "hello.txt")
    assert blob.download_blob().readall() == b"hello"
    # the roles OfflineAzure holds for the principal decide what the other process may do
    principal = entra.credential.principal_id
    entra.roles.revoke(principal, "Azure Batch Data Contributor")
    try:
        assert run().split() == ["refused", "403", "AuthorizationFailure"]
    finally:
        entra.roles.grant(principal, "Azure Batch Data Contributor")
    entra.blob_service_client().delete_container("child")
