"""The Batch client from an :class:`AzureConfig` (the Blob client is staging's)."""

from __future__ import annotations

import inspect
import logging
import threading
from typing import TYPE_CHECKING, Any

from azure.batch import BatchClient
from azure.batch import models as bm
from azure.batch._utils.model_base import Model
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


_models_ready = threading.Lock()
_models_prepared = False


def prepare_models() -> None:
    """Give every ``azure.batch.models`` class its first instance, once per process.

    azure-batch's ``Model.__new__`` works out a class's fields on the class's first
    instance and records them on the class without a lock (``azure/batch/_utils/
    model_base.py``): two threads making the first instances of one class at once can
    fail with "dictionary changed size during iteration". Sessions make models in
    several threads (tasks are built in the upload threads as inputs land, and task
    collections and their answers go 4 at a time), so the classes are prepared here,
    in one thread, before any of that starts.
    """
    global _models_prepared
    with _models_ready:
        if _models_prepared:
            return
        for cls in vars(bm).values():
            if inspect.isclass(cls) and issubclass(cls, Model):
                cls()
        _models_prepared = True


def make_batch_client(config: AzureConfig, **kwargs: Any) -> BatchClient:
    prepare_models()
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
