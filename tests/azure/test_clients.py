"""The storage client's pieces that stand in for the SDK's own per-request work: the
session that reads the environment once, and blob URLs made without a ``BlobClient``.
Each is checked against what requests or azure-storage-blob itself does."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests
from azure.storage.blob import BlobServiceClient
from hypothesis import given
from hypothesis import strategies as st

from batch_transcode._azure._clients import _PooledTransport, _Session, blob_url

URLS = [
    "https://acct.blob.core.windows.net/c/in/a.wav",
    "http://127.0.0.1:10000/devstoreaccount1/c/x",
    "https://acct.westeurope.batch.azure.com/jobs",
    "https://inside.example/x",
]

ENVIRONMENTS = [
    {},
    {"HTTPS_PROXY": "http://proxy.example:3128"},
    {"HTTPS_PROXY": "http://proxy.example:3128", "NO_PROXY": "127.0.0.1,localhost,.example"},
    {"HTTP_PROXY": "http://p:1", "https_proxy": "http://q:2", "no_proxy": "acct.blob.core.windows.net"},
    {"REQUESTS_CA_BUNDLE": "/etc/ssl/ca.pem"},
    {"CURL_CA_BUNDLE": "/etc/ssl/curl.pem", "HTTPS_PROXY": "http://proxy.example:3128"},
]

PROXY_VARIABLES = [
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "ALL_PROXY",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
]


@pytest.fixture
def environment(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    return monkeypatch


@pytest.mark.parametrize("env", ENVIRONMENTS)
@pytest.mark.parametrize("verify", [True, None, False, "/given/ca.pem"])
def test_session_settles_the_environment_as_requests_does(
    environment: pytest.MonkeyPatch, env: dict[str, str], verify: bool | str | None
) -> None:
    for name, value in env.items():
        environment.setenv(name, value)
    ours, theirs = _Session(use_env_settings=True), requests.Session()
    for url in URLS * 2:  # the second round is answered from what the first one read
        got = ours.merge_environment_settings(url, {}, None, verify, None)
        assert got == theirs.merge_environment_settings(url, {}, None, verify, None), url
    plain = requests.Session()
    plain.trust_env = False
    for url in URLS:
        got = _Session(use_env_settings=False).merge_environment_settings(url, {}, None, verify, None)
        assert got == plain.merge_environment_settings(url, {}, None, verify, None)


def test_session_reads_the_environment_once(environment: pytest.MonkeyPatch) -> None:
    environment.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    session = _Session(use_env_settings=True)
    url = URLS[0]
    assert session.merge_environment_settings(url, {}, None, True, None)["proxies"]["https"] == (
        "http://proxy.example:3128"
    )
    environment.setenv("HTTPS_PROXY", "http://other.example:1")
    # the settings of a session stay what they were when it first met the host
    assert session.merge_environment_settings(url, {}, None, True, None)["proxies"]["https"] == (
        "http://proxy.example:3128"
    )


def test_session_adds_no_netrc_credentials(environment: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A netrc entry for the account's host would replace the SDK's Authorization header."""
    netrc = tmp_path / "netrc"
    netrc.write_text("machine acct.blob.core.windows.net login user password secret\n")
    netrc.chmod(0o600)
    environment.setenv("NETRC", str(netrc))
    request = requests.Request("GET", URLS[0], headers={"Authorization": "SharedKey acct:sig"})
    assert requests.Session().prepare_request(request).headers["Authorization"].startswith("Basic ")
    assert _Session(use_env_settings=True).prepare_request(request).headers["Authorization"] == (
        "SharedKey acct:sig"
    )


def test_transport_uses_the_session_and_its_pool(environment: pytest.MonkeyPatch) -> None:
    environment.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    transport = _PooledTransport(24)
    with transport:
        session = transport.session
        assert isinstance(session, _Session) and not session.trust_env
        adapter = session.get_adapter("https://acct.blob.core.windows.net/")
        assert adapter.poolmanager.connection_pool_kw["maxsize"] == 24
        assert adapter.max_retries.total is False  # the SDK's own adapter: its pipeline retries
        settings = session.merge_environment_settings(URLS[0], {}, None, True, None)
        assert settings["proxies"]["https"] == "http://proxy.example:3128"
    assert transport.session is None  # closed with the transport, as the SDK's own session
    off = _PooledTransport(8, use_env_settings=False)
    with off:
        assert off.session.merge_environment_settings(URLS[0], {}, None, True, None)["proxies"] == {}


blob_names = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), min_size=1, max_size=40
)


@given(blob_names)
def test_blob_url_is_the_sdk_clients_url(name: str) -> None:
    for service in (
        BlobServiceClient(
            "http://127.0.0.1:10000/devstoreaccount1",
            credential={"account_name": "devstoreaccount1", "account_key": "Zm9v"},
        ),
        BlobServiceClient("https://acct.blob.core.windows.net", credential="?sv=2025-01-05&sig=x"),
    ):
        container = service.get_container_client("job-in")
        assert blob_url(container.url, name) == container.get_blob_client(name).url
