"""Per-run credentials: each OfflineAzure has its own random Batch and storage keys, and
the published ones (Azurite's development key, an earlier run's) open nothing."""

from __future__ import annotations

import pytest
from azure.core.exceptions import HttpResponseError
from azure.storage.blob import BlobServiceClient

from batch_transcode.testing import BatchEmulator, OfflineAzure
from batch_transcode.testing._azurite import AZURITE_KEY
from helpers import batch_client

pytestmark = pytest.mark.azure


def _storage_with_key(oa: OfflineAzure, key: str) -> BlobServiceClient:
    conn = oa.storage_connection_string.replace(oa.storage_key, key)
    return BlobServiceClient.from_connection_string(conn, retry_total=0)


def test_keys_differ_between_runs_and_old_or_published_keys_are_refused() -> None:
    with OfflineAzure() as first:
        old_batch_key, old_storage_key = first.batch.key, first.storage_key
        env = first.env
        assert env["AZURE_BATCH_ACCESS_KEY"] == old_batch_key
        assert f"AccountKey={old_storage_key};" in env["AZURE_STORAGE_CONNECTION_STRING"]
        assert old_batch_key not in repr(first) and old_batch_key not in repr(first.batch)
    with OfflineAzure() as second:
        assert second.batch.key != old_batch_key
        assert second.storage_key != old_storage_key
        assert AZURITE_KEY not in (second.storage_key, second.batch.key)
        # the run's own keys work ...
        with batch_client(second.batch) as good:
            assert list(good.list_pools()) == []
        second.blob_service_client().create_container("mine")
        # ... the previous run's and the well-known development key do not
        with (
            batch_client(second.batch, key=old_batch_key) as stale,
            pytest.raises(HttpResponseError) as denied,
        ):
            list(stale.list_pools())
        assert denied.value.status_code == 403 and denied.value.error.code == "AuthenticationFailed"
        for key in (old_storage_key, AZURITE_KEY):
            with _storage_with_key(second, key) as other, pytest.raises(HttpResponseError) as refused:
                other.get_container_client("mine").get_container_properties()
            assert refused.value.status_code == 403
            assert refused.value.error_code == "AuthenticationFailed"  # the service's code


def test_a_standalone_emulator_makes_up_its_own_key() -> None:
    one, two = BatchEmulator(), BatchEmulator()
    assert one.key != two.key and len(one.key) == 88  # 64 bytes in base64, as Azure's keys
    assert BatchEmulator(key="a2V5").key == "a2V5"
