"""The Batch client from an :class:`AzureConfig` (the Blob client is staging's)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from azure.batch import BatchClient
from azure.core.credentials import AzureNamedKeyCredential

from batch_transcode._config import AzureConfig
from batch_transcode._errors import ConfigError

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

__all__ = ["make_batch_client", "make_credential"]

log = logging.getLogger(__name__)

#: Transport retries of the SDK pipeline; operations are retried on top by _retry.call,
#: so the pipeline keeps a short budget of its own.
PIPELINE_RETRY: dict[str, Any] = {"retry_total": 3, "retry_backoff_factor": 0.5, "retry_backoff_max": 8}


def make_credential(config: AzureConfig) -> AzureNamedKeyCredential | TokenCredential:
    """Shared Key when a key is configured, else the given credential, else DefaultAzureCredential."""
    if config.batch_key is not None:
        if not config.batch_account:
            raise ConfigError("batch_account is required with batch_key; export AZURE_BATCH_ACCOUNT")
        return AzureNamedKeyCredential(config.batch_account, config.batch_key)
    if config.credential is not None:
        return config.credential
    from azure.identity import DefaultAzureCredential

    return DefaultAzureCredential()


def make_batch_client(config: AzureConfig, **kwargs: Any) -> BatchClient:
    options = {**PIPELINE_RETRY, **kwargs}
    if config.ca_bundle is not None:
        options.setdefault("connection_verify", config.ca_bundle)
    client = BatchClient(config.batch_endpoint, make_credential(config), **options)
    log.debug(
        "Batch client for %s (%s)",
        config.batch_endpoint,
        "Shared Key" if config.batch_key is not None else "Microsoft Entra ID",
    )
    return client
