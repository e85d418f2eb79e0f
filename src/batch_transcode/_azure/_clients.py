"""The Batch and Blob Storage clients of an :class:`AzureConfig`.

Both pipelines keep a short transport retry of their own; operations are retried on
top by :func:`batch_transcode._retry.call`, and both wait by the one backoff formula,
:func:`batch_transcode._retry.backoff`.
"""

from __future__ import annotations

import gc
import inspect
import itertools
import logging
import os
import threading
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

import requests
from azure.batch import BatchClient
from azure.batch import models as bm
from azure.batch._utils.model_base import Model
from azure.core.credentials import AzureNamedKeyCredential
from azure.core.pipeline.transport import RequestsTransport
from azure.storage.blob import BlobClient, BlobServiceClient, ExponentialRetry

from batch_transcode import _retry
from batch_transcode._config import AzureConfig, RetryPolicy
from batch_transcode._errors import ConfigError

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

__all__ = [
    "blob_client",
    "blob_url",
    "make_batch_client",
    "make_blob_service_client",
    "make_credential",
    "storage_retry_policy",
]

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


# -- storage --------------------------------------------------------------------------


class _PolicyRetry(ExponentialRetry):
    """The storage client's transport retry, waiting by :func:`batch_transcode._retry.backoff`.

    The SDK's default (15 s, base 3) makes one ``503 ServerBusy`` cost 15-18 s; these
    waits follow the session's :class:`RetryPolicy` instead.
    """

    def __init__(self, policy: RetryPolicy, retry_total: int) -> None:
        super().__init__(initial_backoff=0, increment_base=2, retry_total=retry_total, random_jitter_range=0)
        self._policy = policy

    def get_backoff_time(self, settings: dict[str, Any]) -> float:
        return _retry.backoff(self._policy, max(1, int(settings.get("count", 0))))


def storage_retry_policy(policy: RetryPolicy, retry_total: int = 5) -> ExponentialRetry:
    """The storage client's transport retry, paced by ``policy`` (see module notes)."""
    return _PolicyRetry(policy, retry_total)


class _Session(requests.Session):
    """A ``requests.Session`` that reads the environment's settings once, not per request.

    With ``trust_env`` (the default) a session looks up ``HTTP(S)_PROXY``/``NO_PROXY``
    and the CA bundle in ``os.environ`` on every request and stats ``~/.netrc``
    (``Session.merge_environment_settings`` and ``Session.prepare_request`` in
    ``requests/sessions.py``): at two blob requests a file, several per cent of the
    client's CPU. This session keeps the same proxy and CA choices, read at its
    creation (the proxies once per scheme and host, as ``NO_PROXY`` is per host), and
    no netrc: every request carries the SDK's own ``Authorization``, which a netrc
    entry for the host would replace.
    """

    def __init__(self, use_env_settings: bool) -> None:
        super().__init__()
        self.trust_env = False
        self._use_env = use_env_settings
        bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
        self._env_verify = bundle if use_env_settings and bundle else None
        self._env_proxies: dict[tuple[str, str, str | None], dict[str, str]] = {}

    def merge_environment_settings(
        self, url: Any, proxies: Any, stream: Any, verify: Any, cert: Any
    ) -> dict[str, Any]:
        if self._use_env:
            no_proxy = proxies.get("no_proxy") if proxies is not None else None
            parts = urlsplit(url)
            key = (parts.scheme, parts.netloc, no_proxy)
            found = self._env_proxies.get(key)
            if found is None:
                found = self._env_proxies[key] = requests.utils.get_environ_proxies(url, no_proxy=no_proxy)
            if proxies is not None:
                for scheme, proxy in found.items():
                    proxies.setdefault(scheme, proxy)
            if (verify is True or verify is None) and self._env_verify is not None:
                verify = self._env_verify
        settings: dict[str, Any] = super().merge_environment_settings(url, proxies, stream, verify, cert)
        return settings


class _PooledTransport(RequestsTransport):  # type: ignore[misc]  # requests is untyped
    """The SDK's requests transport with a connection pool as large as our thread pools
    (requests keeps 10 connections per host; more threads would reconnect each time),
    on a :class:`_Session` (the environment read once, not per request)."""

    def __init__(self, pool_size: int, **kwargs: Any) -> None:
        self._pool_size = pool_size
        session = _Session(kwargs.pop("use_env_settings", True))
        super().__init__(session=session, session_owner=True, use_env_settings=False, **kwargs)
        self._init_session(session)

    def _init_session(self, session: Any) -> None:
        super()._init_session(session)
        for adapter in session.adapters.values():
            init = getattr(adapter, "init_poolmanager", None)
            if callable(init):
                init(self._pool_size, self._pool_size)


def make_blob_service_client(config: AzureConfig, **kwargs: Any) -> tuple[BlobServiceClient, str | None]:
    """The ``BlobServiceClient`` for ``config`` and the account key, if there is one.

    A connection string; or ``storage_account`` (endpoint
    ``https://{account}.blob.core.windows.net`` unless ``storage_endpoint``) with
    ``storage_key``; or with ``credential`` / ``DefaultAzureCredential``.
    """
    pool = 2 * max(config.upload_concurrency, config.download_concurrency, 8)
    options: dict[str, Any] = {
        "retry_policy": storage_retry_policy(config.retry),
        # the transport verifies https against ``ca_bundle`` when one is given
        "transport": _PooledTransport(
            pool, **({"connection_verify": config.ca_bundle} if config.ca_bundle is not None else {})
        ),
    }
    options.update(kwargs)
    if config.storage_connection_string:
        try:
            client = BlobServiceClient.from_connection_string(config.storage_connection_string, **options)
        except ValueError:
            raise ConfigError(
                "storage_connection_string is not a valid Azure Storage connection string "
                "(AZURE_STORAGE_CONNECTION_STRING)"
            ) from None  # the message of ``exc`` may quote the key
        key = getattr(client.credential, "account_key", None)
        log.debug("Blob client for %s (connection string)", client.url)
        return client, key if isinstance(key, str) else None
    account = config.storage_account
    endpoint = config.storage_endpoint or (f"https://{account}.blob.core.windows.net" if account else None)
    if endpoint is None:
        raise ConfigError(
            "no storage account configured; pass AzureConfig(storage_connection_string=...) or "
            "storage_account=..., or export AZURE_STORAGE_CONNECTION_STRING or AZURE_STORAGE_ACCOUNT"
        )
    if config.storage_key:
        if not account:
            raise ConfigError("storage_key needs storage_account; export AZURE_STORAGE_ACCOUNT")
        from azure.core.credentials import AzureNamedKeyCredential

        credential: Any = AzureNamedKeyCredential(account, config.storage_key)
        log.debug("Blob client for %s (account key)", endpoint)
        return BlobServiceClient(endpoint, credential=credential, **options), config.storage_key
    if config.credential is not None:
        credential = config.credential
    else:
        from azure.identity import DefaultAzureCredential

        credential = DefaultAzureCredential()
    log.debug("Blob client for %s (Microsoft Entra ID)", endpoint)
    return BlobServiceClient(endpoint, credential=credential, **options), None


#: Blob clients made between two full garbage collections (see :func:`blob_client`).
BLOB_CLIENTS_PER_COLLECTION = 2000
_blob_clients_made = itertools.count(1)


def blob_client(service: BlobServiceClient, container: str, blob_name: str) -> BlobClient:
    """``service.get_blob_client(container, blob_name)``, with a full garbage collection
    every :data:`BLOB_CLIENTS_PER_COLLECTION` clients.

    Each ``BlobClient`` builds a generated ``Serializer`` and ``Deserializer`` that keep
    dicts of their own bound methods (``azure/storage/blob/_generated/_utils/serialization.py``
    in azure-storage-blob): reference cycles, about 1 KB a client, that only the cyclic
    collector frees. A run makes two clients a file (the upload, the download), and
    with many files' results in memory Python's full collections come rarely: traced
    at 2,000 files, that garbage was over half of what the client held when ``convert``
    returned. A full collection every 2,000 clients bounds it to a few megabytes, for
    well under a millisecond a file.
    """
    if next(_blob_clients_made) % BLOB_CLIENTS_PER_COLLECTION == 0:
        gc.collect()
    return service.get_blob_client(container, blob_name)


def blob_url(container_url: str, blob_name: str) -> str:
    """The URL a ``BlobClient`` gives ``blob_name`` in the container at ``container_url``
    (a ``ContainerClient.url``), without making the client: the name quoted with ``~``
    and ``/`` kept, the container URL's query kept (``_format_url`` in
    ``azure/storage/blob/_blob_client_helpers.py`` of azure-storage-blob)."""
    base, mark, query = container_url.partition("?")
    return f"{base}/{quote(blob_name, safe='~/')}{mark}{query}"
