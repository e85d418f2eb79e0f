"""Blob Storage staging: the session's containers, input uploads, SAS URLs, output downloads.

Each session gets an input and an output container named after its id and tagged
``createdby=batch-transcode`` (the orphan sweep's mark). Inputs upload concurrently
under ``inputs/<path relative to the inputs' common folder>`` with their MD5 set; an
input already present with the same size and MD5 (a persistent ``input_container``,
or a second run in the session) is not uploaded again. Tasks read inputs through
read-only blob SAS URLs and write outputs through a create/write-only container SAS.
Outputs download to a temporary name beside the target and are renamed into place.

SAS tokens are signed with the account key when there is one, else they are
user-delegation SAS (Microsoft Entra ID), valid at most 7 days (the service limit).
With a node identity (``node_identity``) tasks get plain blob URLs and no SAS at all:
the nodes authenticate as the pool's user-assigned identity.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import logging
import mimetypes
import os
import random
import re
import secrets
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

import attrs
from azure.core import exceptions as az
from azure.core.pipeline.transport import RequestsTransport
from azure.storage.blob import (
    BlobSasPermissions,
    BlobServiceClient,
    ContainerSasPermissions,
    ContentSettings,
    ExponentialRetry,
    UserDelegationKey,
    generate_blob_sas,
    generate_container_sas,
)

from batch_transcode._azure.builders import CREATED_BY
from batch_transcode._config import AzureConfig, RetryPolicy
from batch_transcode._errors import ConfigError
from batch_transcode._naming import WorkItem
from batch_transcode._redact import redact

if TYPE_CHECKING:
    from batch_transcode._teardown import Teardown

__all__ = [
    "INPUT_PREFIX",
    "OUTPUT_PREFIX",
    "CancelFlag",
    "Download",
    "StagedInput",
    "Staging",
    "blob_path",
    "make_blob_service_client",
    "storage_retry_policy",
]

log = logging.getLogger(__name__)


def blob_path(relative: str) -> str:
    """The blob name for a file's relative (POSIX) path: the path itself, except that
    ``\\`` (which the storage service does not keep as-is in a SAS-signed URL) is written
    ``%5C``, and so ``%`` is written ``%25`` to keep names distinct."""
    return relative.replace("%", "%25").replace("\\", "%5C")


class CancelFlag(Protocol):
    """What staging and task submission ask of a cancel signal (a ``threading.Event`` is one)."""

    def is_set(self) -> bool: ...


class StagingCancelled(Exception):
    """Raised by :meth:`Staging.upload_inputs` when the run is cancelled midway: uploads
    under way finish, no new one starts."""


#: Blob name prefixes of inputs and outputs inside their containers.
INPUT_PREFIX = "inputs/"
OUTPUT_PREFIX = "outputs/"
#: SAS tokens start this long before "now", for clocks that run behind.
CLOCK_SKEW = dt.timedelta(minutes=5)
#: The longest a user-delegation SAS (and its key) may be valid.
MAX_DELEGATION = dt.timedelta(days=7)
_HASH_BLOCK = 4 * 1024 * 1024


# -- clients ------------------------------------------------------------------------------


class _CappedExponentialRetry(ExponentialRetry):
    """Exponential backoff from ``wait_initial`` doubling up to ``wait_max``, with jitter.

    The SDK's default (15 s, base 3) makes one ``503 ServerBusy`` cost 15-18 s; these
    waits follow the session's :class:`RetryPolicy` instead.
    """

    def __init__(self, policy: RetryPolicy, retry_total: int) -> None:
        super().__init__(initial_backoff=0, increment_base=2, retry_total=retry_total, random_jitter_range=0)
        self._wait_initial = policy.wait_initial
        self._wait_max = policy.wait_max
        self._random = random.Random()  # noqa: S311 - jitter, not cryptography

    def get_backoff_time(self, settings: dict[str, Any]) -> float:
        count = int(settings.get("count", 0))
        wait = min(self._wait_max, self._wait_initial * (2**count))
        return self._random.uniform(wait / 2, wait) if wait > 0 else 0.0


def storage_retry_policy(policy: RetryPolicy, retry_total: int = 5) -> ExponentialRetry:
    """The storage client's transport retry, paced by ``policy`` (see module notes)."""
    return _CappedExponentialRetry(policy, retry_total)


class _PooledTransport(RequestsTransport):  # type: ignore[misc]  # requests is untyped
    """The SDK's requests transport with a connection pool as large as our thread pools
    (requests keeps 10 connections per host; more threads would reconnect each time)."""

    def __init__(self, pool_size: int, **kwargs: Any) -> None:
        self._pool_size = pool_size
        super().__init__(**kwargs)

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


# -- names --------------------------------------------------------------------------------


def _container_base(prefix: str, session_id: str) -> str:
    base = (
        session_id
        if session_id.startswith(f"{prefix}-") or session_id == prefix
        else f"{prefix}-{session_id}"
    )
    base = re.sub(r"[^a-z0-9-]+", "-", base.lower())
    base = re.sub(r"-{2,}", "-", base).strip("-")
    base = base[:59].rstrip("-")  # room for "-out" within 63 characters
    if len(base) < 1:
        raise ConfigError(f"cannot derive container names from session id {session_id!r}")
    if not base[0].isalnum():
        base = "c" + base
    return base


def _md5_of(path: Path) -> tuple[int, bytes]:
    digest = hashlib.md5(usedforsecurity=False)
    size = 0
    with open(path, "rb") as f:
        while block := f.read(_HASH_BLOCK):
            digest.update(block)
            size += len(block)
    return size, digest.digest()


def _close_response(exc: BaseException) -> None:
    """Release the connection of a streamed error response (else its socket lingers)."""
    response = getattr(exc, "response", None)
    close = getattr(response, "close", None)
    if callable(close):
        with contextlib.suppress(Exception):
            close()


@attrs.define(frozen=True)
class StagedInput:
    """An input in Blob Storage: its blob, a read-only SAS URL, whether it was uploaded now."""

    index: int
    blob_name: str
    sas_url: str = attrs.field(repr=lambda url: repr(redact(url)))
    uploaded: bool
    size: int


@attrs.define(frozen=True)
class Download:
    """What became of one output download: ``"downloaded"`` (``size`` bytes), ``"failed"``
    (``error`` says why; nothing was written at the target) or ``"cancelled"`` (not
    started: the run was cancelled first)."""

    status: Literal["downloaded", "failed", "cancelled"]
    error: str | None = None
    size: int = 0

    @property
    def ok(self) -> bool:
        return self.status == "downloaded"


# -- staging -------------------------------------------------------------------------------


class Staging:
    """One session's view of Blob Storage. Thread-safe.

    Containers are named after ``prefix`` and ``session_id`` (``{base}-in``,
    ``{base}-out``) unless given: ``input_container`` is a persistent container the
    session never deletes (unless ``persistent_input=False`` says the session made it),
    ``output_container`` an output container made earlier (attaching to a session).
    :meth:`from_config` takes all of that from an :class:`AzureConfig`.
    """

    def __init__(
        self,
        service: BlobServiceClient,
        *,
        session_id: str,
        prefix: str,
        expiry: dt.datetime,
        concurrency: int = 16,
        input_container: str | None = None,
        output_container: str | None = None,
        persistent_input: bool | None = None,
        metadata: Mapping[str, str] = {},  # read only: never mutated
        account_key: str | None = None,
        download_concurrency: int | None = None,
        keep_outputs: bool = False,
        node_identity: str | None = None,
    ) -> None:
        if concurrency < 1:
            raise ConfigError(f"concurrency must be >= 1, got {concurrency}")
        self.service = service
        self.session_id = session_id
        self.expiry = expiry if expiry.tzinfo else expiry.replace(tzinfo=dt.UTC)
        self.concurrency = concurrency
        self.download_concurrency = download_concurrency or concurrency
        self.keep_outputs = keep_outputs
        self.node_identity = node_identity
        self._account_key = account_key
        self.created_at = dt.datetime.now(dt.UTC)
        self.metadata: dict[str, str] = {
            **dict(metadata),
            "createdby": CREATED_BY,
            "session": session_id,
            "createdat": self.created_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        base = _container_base(prefix, session_id)
        self.persistent_input = input_container is not None if persistent_input is None else persistent_input
        self.input_container_name: str = input_container if input_container is not None else f"{base}-in"
        self.output_container_name: str = output_container if output_container is not None else f"{base}-out"
        self._lock = threading.Lock()
        self._known: dict[str, tuple[int, bytes]] = {}  # blobs this session put in the input container
        self._delegation_key: UserDelegationKey | None = None
        self._created: set[str] = set()
        self._refused: set[str] = set()  # creates the service refused (403): never made
        self.bytes_uploaded = 0
        self.uploads_skipped = 0
        self.bytes_downloaded = 0

    @classmethod
    def from_config(
        cls,
        config: AzureConfig,
        service: BlobServiceClient,
        *,
        session_id: str,
        expiry: dt.datetime,
        account_key: str | None = None,
    ) -> Staging:
        """The staging of a new session: prefix, concurrency, ``input_container`` and
        ``keep_outputs_in_storage`` from ``config``."""
        return cls(
            service,
            session_id=session_id,
            prefix=config.resource_prefix,
            expiry=expiry,
            concurrency=config.upload_concurrency,
            download_concurrency=config.download_concurrency,
            input_container=config.input_container,
            keep_outputs=config.keep_outputs_in_storage,
            account_key=account_key,
            node_identity=config.node_identity,
        )

    def __repr__(self) -> str:
        return (
            f"<Staging session={self.session_id} in={self.input_container_name} "
            f"out={self.output_container_name}>"
        )

    # -- containers ---------------------------------------------------------------------

    def own_containers(self, teardown: Teardown) -> None:
        """Push the delete of each container the session owns on ``teardown``: the input
        container unless persistent, the output container unless ``keep_outputs``."""
        if not self.persistent_input:
            name = self.input_container_name
            teardown.push(f"container {name}", lambda: self.delete_container(name))
        out = self.output_container_name
        if self.keep_outputs:
            log.info("keep_outputs_in_storage=True: container %s will be kept", out)
        else:
            teardown.push(f"container {out}", lambda: self.delete_container(out))

    def create_containers(self, teardown: Teardown) -> None:
        """Create both containers; their delete steps are on ``teardown`` before the create
        requests go out (a create whose answer was lost is still cleaned up)."""
        self.own_containers(teardown)
        try:
            if self.persistent_input:
                self._create(self.input_container_name, {"purpose": "batch-transcode inputs"}, exist_ok=True)
            else:
                self._create(self.input_container_name, self.metadata)
            self._create(self.output_container_name, self.metadata)
        except az.HttpResponseError as exc:
            if exc.status_code == 403:  # a missing role: what was not made is not to delete
                names = (self.input_container_name, self.output_container_name)
                self._refused.update(n for n in names if n not in self._created)
            raise

    def _create(self, name: str, metadata: Mapping[str, str], *, exist_ok: bool = False) -> None:
        try:
            self.service.create_container(name, metadata=dict(metadata))
            log.info("container %s created", name)
        except az.ResourceExistsError:
            if not exist_ok and name not in self._created:
                # a retried create whose first answer was lost: ours if it carries our session
                props = self.service.get_container_client(name).get_container_properties()
                if (props.metadata or {}).get("session") != self.session_id:
                    raise
            log.info("container %s already exists", name)
        self._created.add(name)

    def delete_container(self, name: str) -> None:
        """Delete one container; "not found" is success, and so is a container whose create
        the service refused (403)."""
        if name in self._refused:
            log.debug("container %s was never created (the service refused it)", name)
            return
        try:
            self.service.delete_container(name)
            log.info("container %s deleted", name)
        except az.ResourceNotFoundError:
            log.debug("container %s was already gone", name)

    def delete_containers(self) -> None:
        """Delete the session's containers (never a persistent input container); idempotent."""
        if not self.persistent_input:
            self.delete_container(self.input_container_name)
        self.delete_container(self.output_container_name)

    # -- SAS ----------------------------------------------------------------------------

    def _sas_window(self) -> tuple[dt.datetime, dt.datetime]:
        now = dt.datetime.now(dt.UTC)
        start = now - CLOCK_SKEW
        expiry = self.expiry
        if self._account_key is None:
            expiry = min(expiry, start + MAX_DELEGATION)
        return start, expiry

    def _signing(self) -> dict[str, Any]:
        if self._account_key is not None:
            return {"account_key": self._account_key}
        with self._lock:
            if self._delegation_key is None:
                start, expiry = self._sas_window()
                self._delegation_key = self.service.get_user_delegation_key(start, expiry)
            return {"user_delegation_key": self._delegation_key}

    def check_signing(self) -> None:
        """Fetch the user-delegation key now when SAS will need one: a principal without
        the right to make one (a storage data role) fails here, before anything billable
        exists, rather than when the first SAS is made."""
        if self._account_key is None and self.node_identity is None:
            self._signing()

    def _protocol(self) -> str | None:
        return "https" if self.service.url.startswith("https:") else None

    def blob_sas_url(self, container: str, blob_name: str) -> str:
        """A read-only SAS URL for one blob, valid until ``expiry`` (with a node identity:
        the blob's plain URL, which the node reads as that identity)."""
        if self.node_identity is not None:
            return self.service.get_blob_client(container, blob_name).url
        start, expiry = self._sas_window()
        sas = generate_blob_sas(
            self.service.account_name or "",
            container,
            blob_name,
            permission=BlobSasPermissions(read=True),
            start=start,
            expiry=expiry,
            protocol=self._protocol(),
            **self._signing(),
        )
        url = self.service.get_blob_client(container, blob_name).url
        return f"{url}?{sas}"

    def output_container_sas_url(self) -> str:
        """A container SAS URL for the output container: create and write only (tasks
        cannot read, list or delete anything). With a node identity: the container's plain
        URL (what the node may do is then its identity's role)."""
        if self.node_identity is not None:
            return self.service.get_container_client(self.output_container_name).url
        start, expiry = self._sas_window()
        sas = generate_container_sas(
            self.service.account_name or "",
            self.output_container_name,
            permission=ContainerSasPermissions(create=True, write=True),
            start=start,
            expiry=expiry,
            protocol=self._protocol(),
            **self._signing(),
        )
        url = f"{self.service.get_container_client(self.output_container_name).url}?{sas}"
        log.debug("output container SAS %s", redact(url))
        return url

    # -- upload -------------------------------------------------------------------------

    @staticmethod
    def input_blob_name(item: WorkItem) -> str:
        return INPUT_PREFIX + blob_path(item.relative_source)

    @staticmethod
    def output_blob_name(item: WorkItem) -> str:
        return OUTPUT_PREFIX + blob_path(item.relative_output)

    @staticmethod
    def output_blob_names(item: WorkItem) -> tuple[str, ...]:
        """Every output's blob, in the presets' order (the first is :meth:`output_blob_name`)."""
        return tuple(OUTPUT_PREFIX + blob_path(r) for r in item.relative_outputs)

    def _identical_exists(self, blob_name: str, size: int, md5: bytes) -> bool:
        with self._lock:
            known = self._known.get(blob_name)
        if known is not None:
            return known == (size, md5)
        if not self.persistent_input:
            return False  # a fresh session container holds only what this session put there
        try:
            props = self.service.get_blob_client(self.input_container_name, blob_name).get_blob_properties()
        except az.ResourceNotFoundError:
            return False
        remote_md5 = props.content_settings.content_md5
        return props.size == size and remote_md5 is not None and bytes(remote_md5) == md5

    def _upload(self, path: Path, blob_name: str, max_concurrency: int) -> tuple[int, bool]:
        size, md5 = _md5_of(path)
        if self._identical_exists(blob_name, size, md5):
            with self._lock:
                self.uploads_skipped += 1
                self._known[blob_name] = (size, md5)
            log.debug("%s: unchanged in container %s, not uploaded", blob_name, self.input_container_name)
            return size, False
        content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        blob = self.service.get_blob_client(self.input_container_name, blob_name)
        with open(path, "rb") as f:
            blob.upload_blob(
                f,
                length=size,
                overwrite=True,
                content_settings=ContentSettings(content_type=content_type, content_md5=bytearray(md5)),
                max_concurrency=max_concurrency,
            )
        with self._lock:
            self.bytes_uploaded += size
            self._known[blob_name] = (size, md5)
        return size, True

    def upload_inputs(
        self,
        items: Sequence[WorkItem],
        cancel: CancelFlag | None = None,
        on_staged: Callable[[WorkItem, StagedInput], None] | None = None,
    ) -> list[StagedInput]:
        """Upload the inputs (``concurrency`` at once), skipping identical blobs; return a
        read-only SAS URL for each, in the order of ``items``. ``on_staged`` is called (from
        an upload thread) as each input lands. Once ``cancel`` is set no new upload starts
        and :class:`StagingCancelled` is raised."""
        if not items:
            return []
        per_blob = max(1, min(8, self.concurrency // len(items)))

        def one(item: WorkItem) -> StagedInput:
            if cancel is not None and cancel.is_set():
                raise StagingCancelled
            name = self.input_blob_name(item)
            size, uploaded = self._upload(item.source, name, per_blob)
            staged = StagedInput(
                index=item.index,
                blob_name=name,
                sas_url=self.blob_sas_url(self.input_container_name, name),
                uploaded=uploaded,
                size=size,
            )
            if on_staged is not None:
                on_staged(item, staged)
            return staged

        staged = self._map(one, items, self.concurrency, "bt-upload")
        uploaded = [s for s in staged if s.uploaded]
        log.info(
            "inputs: %d uploaded (%d bytes), %d unchanged, to container %s",
            len(uploaded),
            sum(s.size for s in uploaded),
            len(staged) - len(uploaded),
            self.input_container_name,
        )
        return staged

    def upload_file(self, path: Path, blob_name: str) -> str:
        """Upload one file (e.g. a static ffmpeg) into the input container, unless an
        identical blob is there; return a read-only SAS URL."""
        self._upload(Path(path), blob_name, max_concurrency=min(8, self.concurrency))
        return self.blob_sas_url(self.input_container_name, blob_name)

    # -- download -----------------------------------------------------------------------

    def read_output_blob(self, blob_name: str) -> bytes | None:
        """A (small) blob of the output container, or ``None`` if it does not exist."""
        try:
            data = self.service.get_blob_client(self.output_container_name, blob_name).download_blob()
            return data.readall()
        except az.ResourceNotFoundError:
            return None

    def write_output_blob(self, blob_name: str, data: bytes) -> None:
        """Write a small blob (e.g. the job manifest) into the output container."""
        self.service.get_blob_client(self.output_container_name, blob_name).upload_blob(
            data,
            overwrite=True,
            content_settings=ContentSettings(content_type="application/json"),
        )

    def list_output_blobs(self, prefix: str) -> list[str]:
        """Names of the output container's blobs under ``prefix`` (none if the container
        does not exist)."""
        container = self.service.get_container_client(self.output_container_name)
        try:
            return [str(b.name) for b in container.list_blobs(name_starts_with=prefix)]
        except az.ResourceNotFoundError:
            return []

    def download_output(self, item: WorkItem) -> Download:
        """Download every output of ``item`` to ``item.outputs`` (each to a temporary name,
        then an atomic rename). If one fails, those of the item already renamed are removed
        again: an item's outputs are there all together or not at all."""
        return self._download_one(item)

    def _download_one(self, item: WorkItem) -> Download:
        done: list[Path] = []
        size = 0
        for name, target in zip(self.output_blob_names(item), item.outputs, strict=True):
            download = self._download_blob(name, target)
            if not download.ok:
                for path in done:
                    with contextlib.suppress(OSError):
                        path.unlink()
                return download
            done.append(target)
            size += download.size
        return Download("downloaded", size=size)

    def _download_blob(self, name: str, target: Path) -> Download:
        tmp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.part")
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            blob = self.service.get_blob_client(self.output_container_name, name)
            with open(tmp, "wb") as f:
                size = blob.download_blob(max_concurrency=2).readinto(f)
            os.replace(tmp, target)
            with self._lock:
                self.bytes_downloaded += size
            return Download("downloaded", size=size)
        except az.ResourceNotFoundError as exc:
            _close_response(exc)
            return Download(
                "failed", f"output blob {name!r} not found in container {self.output_container_name}"
            )
        except az.AzureError as exc:
            _close_response(exc)
            return Download(
                "failed", redact(f"downloading blob {name!r} failed: {type(exc).__name__}: {exc}")
            )
        except OSError as exc:
            return Download("failed", f"writing {str(target)!r} failed: {exc}")
        finally:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)

    def download_outputs(
        self, items: Sequence[WorkItem], cancel: CancelFlag | None = None
    ) -> dict[int, Download]:
        """Download each item's output to ``item.output`` (a temporary name, then an atomic
        rename; never a partial file); index -> :class:`Download`. Once ``cancel`` is set
        no new download starts (those are ``"cancelled"``)."""
        if not items:
            return {}

        def one(item: WorkItem) -> Download:
            if cancel is not None and cancel.is_set():
                return Download("cancelled")
            return self._download_one(item)

        downloads: list[Download] = self._map(one, items, self.download_concurrency, "bt-download")
        result = {item.index: d for item, d in zip(items, downloads, strict=True)}
        done = sum(d.ok for d in downloads)
        log.info("outputs: %d downloaded, %d not", done, len(downloads) - done)
        return result

    # -- helpers ------------------------------------------------------------------------

    @staticmethod
    def _map(fn: Callable[[WorkItem], Any], items: Sequence[WorkItem], workers: int, name: str) -> list[Any]:
        if len(items) == 1 or workers == 1:
            return [fn(i) for i in items]
        pool = ThreadPoolExecutor(max_workers=min(workers, len(items)), thread_name_prefix=name)
        try:
            return list(pool.map(fn, items))
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)  # do not start the rest after a failure
            raise
        finally:
            pool.shutdown(wait=True)
