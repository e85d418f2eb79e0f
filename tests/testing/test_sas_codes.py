"""Storage refuses failed SAS and Shared Key checks with the service's codes:
403 AuthenticationFailed with its AuthenticationErrorDetail (Azurite says AuthorizationFailure)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest
from azure.core.exceptions import HttpResponseError
from azure.storage.blob import BlobClient, BlobSasPermissions, generate_blob_sas

from batch_transcode.testing import OfflineAzure
from batch_transcode.testing._proxy import authentication_detail
from batch_transcode.testing._serving import new_account_key

pytestmark = pytest.mark.azure

NOW = dt.datetime.now(dt.UTC)


@pytest.fixture
def blob(offline_azure: OfflineAzure) -> Iterator[tuple[OfflineAzure, str]]:
    client = offline_azure.blob_service_client()
    client.create_container("sas-codes")
    client.get_blob_client("sas-codes", "a.txt").upload_blob(b"hello")
    yield offline_azure, f"{offline_azure.blob_endpoint}/sas-codes/a.txt"
    client.delete_container("sas-codes")


def _sas(oa: OfflineAzure, *, start: dt.datetime | None = None, expiry: dt.datetime, **perms: bool) -> str:
    return generate_blob_sas(
        oa.storage_account,
        "sas-codes",
        "a.txt",
        account_key=oa.storage_key,
        permission=BlobSasPermissions(**perms),
        start=start,
        expiry=expiry,
    )


def _refusal(url: str, *, head: bool = False, upload: bool = False) -> HttpResponseError:
    with BlobClient.from_blob_url(url, retry_total=0) as client, pytest.raises(HttpResponseError) as refused:
        if upload:
            client.upload_blob(b"x", overwrite=True)
        elif head:
            client.get_blob_properties()
        else:
            client.download_blob().readall()
    assert refused.value.status_code == 403
    return refused.value


def test_a_tampered_signature_is_authentication_failed(blob: tuple[OfflineAzure, str]) -> None:
    oa, url = blob
    sas = _sas(oa, expiry=NOW + dt.timedelta(hours=1), read=True)
    with BlobClient.from_blob_url(f"{url}?{sas}", retry_total=0) as good:
        assert good.download_blob().readall() == b"hello"
    tampered = sas.replace("sig=", "sig=AAAA", 1)
    refused = _refusal(f"{url}?{tampered}")
    assert refused.error_code == "AuthenticationFailed"
    assert "AuthenticationErrorDetail" in str(refused) and "Signature did not match" in str(refused)
    # a HEAD has no body: the code is in the x-ms-error-code header
    assert _refusal(f"{url}?{tampered}", head=True).error_code == "AuthenticationFailed"


def test_an_expired_or_not_yet_valid_sas_says_its_time_frame(blob: tuple[OfflineAzure, str]) -> None:
    oa, url = blob
    expired = _sas(oa, start=NOW - dt.timedelta(hours=2), expiry=NOW - dt.timedelta(hours=1), read=True)
    refused = _refusal(f"{url}?{expired}")
    assert refused.error_code == "AuthenticationFailed"
    assert "Signature not valid in the specified time frame: Start [" in str(refused)
    early = _sas(oa, start=NOW + dt.timedelta(hours=1), expiry=NOW + dt.timedelta(hours=2), read=True)
    assert _refusal(f"{url}?{early}").error_code == "AuthenticationFailed"


def test_a_missing_permission_stays_a_permission_mismatch(blob: tuple[OfflineAzure, str]) -> None:
    oa, url = blob
    read_only = _sas(oa, expiry=NOW + dt.timedelta(hours=1), read=True)
    refused = _refusal(f"{url}?{read_only}", upload=True)
    assert refused.error_code == "AuthorizationPermissionMismatch"


def test_a_wrong_shared_key_is_authentication_failed(offline_azure: OfflineAzure) -> None:
    from azure.storage.blob import BlobServiceClient

    other_key = new_account_key()
    conn = offline_azure.storage_connection_string.replace(offline_azure.storage_key, other_key)
    with (
        BlobServiceClient.from_connection_string(conn, retry_total=0) as client,
        pytest.raises(HttpResponseError) as e,
    ):
        list(client.list_containers())
    assert e.value.status_code == 403 and e.value.error_code == "AuthenticationFailed"


def test_the_details_follow_the_services_wording() -> None:
    at = dt.datetime(2026, 12, 6, 12, 0, tzinfo=dt.UTC)
    expired = "https://a/c/b?st=2026-12-06T09%3A00%3A00Z&se=2026-12-06T10%3A00%3A00Z&sig=x"
    assert authentication_detail(expired, "", at) == (
        "Signature not valid in the specified time frame: Start [Sun, 06 Dec 2026 09:00:00 GMT] - "
        "Expiry [Sun, 06 Dec 2026 10:00:00 GMT] - Current [Sun, 06 Dec 2026 12:00:00 GMT]"
    )
    backwards = "https://a/c/b?st=2026-12-06T11%3A00%3A00Z&se=2026-12-06T10%3A00%3A00Z&sig=x"
    assert authentication_detail(backwards, "", at) == (
        "Signed expiry time [Sun, 06 Dec 2026 10:00:00 GMT] must be after signed start time "
        "[Sun, 06 Dec 2026 11:00:00 GMT]"
    )
    assert authentication_detail("https://a/c/b", "Bearer x", at) is None  # tokens keep Azurite's answer


def test_service_errors_off_routes_straight_to_azurite(blob: tuple[OfflineAzure, str]) -> None:
    with OfflineAzure(service_errors=False) as direct:
        assert direct.storage_proxy is None
        assert f":{direct.azurite_port}/" in direct.storage_connection_string
