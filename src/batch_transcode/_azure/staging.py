"""Blob Storage transfers and SAS: input uploads, output downloads, SAS URLs for tasks.

Inputs upload concurrently under their blob names (:mod:`~batch_transcode._azure.names`)
with their MD5 set; an input already present with the same size and MD5 (a persistent
``input_container``, or a second run in the session: the session's
:class:`UploadLedger` remembers what it put there) is not uploaded again. Tasks read
inputs through read-only blob SAS URLs and write outputs through a create/write-only
container SAS. Outputs download to a temporary name beside the target and are renamed
into place.

SAS tokens are signed with the account key when there is one, else they are
user-delegation SAS (Microsoft Entra ID), valid at most 7 days (the service limit).
With a node identity (``node_identity``) tasks get plain blob URLs and no SAS at all:
the nodes authenticate as the pool's user-assigned identity.

:class:`Staging` is a frozen value and raises batch_transcode errors only: the Azure
SDK's exceptions are translated here, at its boundary
(:func:`~batch_transcode._azure._errors.azure_errors`). The containers themselves are
made and removed by :mod:`~batch_transcode._azure.containers`.
"""

from __future__ import annotations

import collections
import contextlib
import datetime as dt
import hashlib
import logging
import mimetypes
import os
import secrets
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any, Protocol, TypeVar

import attrs
from azure.core import exceptions as az
from azure.storage.blob import (
    BlobSasPermissions,
    BlobServiceClient,
    ContainerSasPermissions,
    ContentSettings,
    UserDelegationKey,
    generate_blob_sas,
    generate_container_sas,
)

from batch_transcode._azure import names
from batch_transcode._azure._clients import blob_client, blob_url
from batch_transcode._azure._errors import azure_errors
from batch_transcode._azure.containers import Containers
from batch_transcode._naming import WorkItem
from batch_transcode._redact import redact
from batch_transcode._telemetry import ContextExecutor

__all__ = ["CancelFlag", "Download", "StagedInput", "Staging", "StagingCancelled", "UploadLedger"]

log = logging.getLogger(__name__)

T = TypeVar("T")

#: SAS tokens start this long before "now", for clocks that run behind.
CLOCK_SKEW = dt.timedelta(minutes=5)
#: The longest a user-delegation SAS (and its key) may be valid.
MAX_DELEGATION = dt.timedelta(days=7)


class CancelFlag(Protocol):
    """What staging and task submission ask of a cancel signal (a ``threading.Event`` is one)."""

    def is_set(self) -> bool: ...


class StagingCancelled(Exception):
    """Raised by :meth:`Staging.upload_inputs` when the run is cancelled midway: uploads
    under way finish, no new one starts."""


def _md5_of(path: Path) -> tuple[int, bytes]:
    """The size and MD5 of a file, read through one 256 KiB buffer (``hashlib.file_digest``):
    a fresh multi-MiB block per read, in each of 16 upload threads, leaves that much
    memory in each thread's malloc arena for the rest of the run."""
    with open(path, "rb") as f:
        digest = hashlib.file_digest(f, lambda: hashlib.md5(usedforsecurity=False))
        return f.tell(), digest.digest()


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
    """What became of one item's output download: ``size`` bytes written, or ``error``
    saying why not (nothing was left at the target then)."""

    error: str | None = None
    size: int = 0

    @property
    def ok(self) -> bool:
        return self.error is None


class UploadLedger:
    """The blobs a session put in its input container (name -> size and MD5), so that a
    second run of the session uploads only what changed. Thread-safe; one per session.

    Each entry is kept as one ``bytes`` (the MD5, then the size in 8 bytes): 57 bytes a
    blob where a tuple of an int and a bytes is 133, at 100,000 inputs 8 MB."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._known: dict[str, bytes] = {}

    def get(self, blob_name: str) -> tuple[int, bytes] | None:
        with self._lock:
            packed = self._known.get(blob_name)
        if packed is None:
            return None
        return int.from_bytes(packed[16:], "big"), packed[:16]

    def put(self, blob_name: str, size: int, md5: bytes) -> None:
        packed = md5 + size.to_bytes(8, "big")
        with self._lock:
            self._known[blob_name] = packed


@attrs.define(frozen=True, kw_only=True)
class Staging:
    """One session's transfers in its :class:`Containers`. Thread-safe.

    ``account_key`` signs SAS when there is one; else ``delegation_key`` (a user
    delegation key, see :meth:`connect`) does, unless ``node_identity`` is set (then
    tasks get plain URLs and authenticate as that identity).
    """

    service: BlobServiceClient = attrs.field(repr=False)
    containers: Containers
    #: The latest any SAS made here is valid.
    expiry: dt.datetime
    upload_concurrency: int = 16
    download_concurrency: int = 16
    account_key: str | None = attrs.field(default=None, repr=False)
    delegation_key: UserDelegationKey | None = attrs.field(default=None, repr=False)
    node_identity: str | None = None
    #: container name -> its URL (a ``ContainerClient`` is as costly to make as a blob's)
    _container_urls: dict[str, str] = attrs.field(factory=dict, init=False, repr=False, eq=False)

    @classmethod
    def connect(
        cls,
        service: BlobServiceClient,
        containers: Containers,
        *,
        expiry: dt.datetime,
        account_key: str | None,
        node_identity: str | None,
        upload_concurrency: int = 16,
        download_concurrency: int = 16,
    ) -> Staging:
        """The staging of a session; without an account key or a node identity it gets
        the user-delegation key now: a principal without the right to make one (a storage
        data role) fails here, before anything billable exists, rather than at the first SAS."""
        expiry = expiry if expiry.tzinfo else expiry.replace(tzinfo=dt.UTC)
        key = None
        if account_key is None and node_identity is None:
            start, end = _sas_window(expiry, delegated=True)
            with azure_errors("get a user delegation key (to sign SAS for the tasks)"):
                key = service.get_user_delegation_key(start, end)
        return cls(
            service=service,
            containers=containers,
            expiry=expiry,
            upload_concurrency=upload_concurrency,
            download_concurrency=download_concurrency,
            account_key=account_key,
            delegation_key=key,
            node_identity=node_identity,
        )

    # -- SAS ----------------------------------------------------------------------------

    def _sas(self, make: Callable[..., str], *args: Any, permission: Any) -> str:
        start, expiry = _sas_window(self.expiry, delegated=self.account_key is None)
        key = self.account_key
        signing = {"account_key": key} if key is not None else {"user_delegation_key": self.delegation_key}
        return make(
            self.service.account_name or "",
            *args,
            permission=permission,
            start=start,
            expiry=expiry,
            protocol="https" if self.service.url.startswith("https:") else None,
            **signing,
        )

    def blob_sas_url(self, container: str, blob_name: str) -> str:
        """A read-only SAS URL for one blob, valid until ``expiry`` (with a node identity:
        the blob's plain URL, which the node reads as that identity)."""
        url = blob_url(self._container_url(container), blob_name)
        if self.node_identity is not None:
            return url
        sas = self._sas(generate_blob_sas, container, blob_name, permission=BlobSasPermissions(read=True))
        return f"{url}?{sas}"

    def _container_url(self, container: str) -> str:
        url = self._container_urls.get(container)
        if url is None:
            url = self._container_urls[container] = self.service.get_container_client(container).url
        return url

    def output_container_sas_url(self) -> str:
        """A container SAS URL for the output container: create and write only (tasks
        cannot read, list or delete anything). With a node identity: the container's plain
        URL (what the node may do is then its identity's role)."""
        out = self.containers.output
        url = self._container_url(out)
        if self.node_identity is not None:
            return url
        sas = self._sas(
            generate_container_sas, out, permission=ContainerSasPermissions(create=True, write=True)
        )
        log.debug("output container SAS %s", redact(f"{url}?{sas}"))
        return f"{url}?{sas}"

    # -- upload -------------------------------------------------------------------------

    def _upload(
        self, ledger: UploadLedger, path: Path, blob_name: str, max_concurrency: int
    ) -> tuple[int, bool]:
        size, md5 = _md5_of(path)
        if _identical_exists(self, ledger, blob_name, size, md5):
            ledger.put(blob_name, size, md5)
            log.debug("%s: unchanged in container %s, not uploaded", blob_name, self.containers.input)
            return size, False
        content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        blob = blob_client(self.service, self.containers.input, blob_name)
        with open(path, "rb") as f:
            blob.upload_blob(
                f,
                length=size,
                overwrite=True,
                content_settings=ContentSettings(content_type=content_type, content_md5=bytearray(md5)),
                max_concurrency=max_concurrency,
            )
        ledger.put(blob_name, size, md5)
        return size, True

    def upload_inputs(
        self,
        items: Sequence[WorkItem],
        ledger: UploadLedger,
        cancel: CancelFlag | None = None,
        on_staged: Callable[[WorkItem, StagedInput], None] | None = None,
    ) -> list[StagedInput]:
        """Upload the inputs (``upload_concurrency`` at once), skipping identical blobs;
        return a read-only SAS URL for each, in the order of ``items``. With ``on_staged``
        (called from an upload thread as each input lands) the staged inputs are its to
        keep: none is kept here and the list returned is empty. Once ``cancel`` is set no
        new upload starts and :class:`StagingCancelled` is raised."""
        if not items:
            return []
        per_blob = max(1, min(8, self.upload_concurrency // len(items)))

        def one(item: WorkItem) -> StagedInput:
            if cancel is not None and cancel.is_set():
                raise StagingCancelled
            name = names.input_blob(item.relative_source)
            size, uploaded = self._upload(ledger, item.source, name, per_blob)
            staged = StagedInput(
                index=item.index,
                blob_name=name,
                sas_url=self.blob_sas_url(self.containers.input, name),
                uploaded=uploaded,
                size=size,
            )
            if on_staged is not None:
                on_staged(item, staged)
            return staged

        kept: list[StagedInput] = []
        uploaded, size, unchanged = 0, 0, 0
        with azure_errors("upload the inputs"):
            for staged in _map(one, items, self.upload_concurrency, "bt-upload"):
                if staged.uploaded:
                    uploaded, size = uploaded + 1, size + staged.size
                else:
                    unchanged += 1
                if on_staged is None:
                    kept.append(staged)
        log.info("inputs: %d uploaded (%d bytes), %d unchanged, to container %s",
                 uploaded, size, unchanged, self.containers.input)  # fmt: skip
        return kept

    def upload_file(self, ledger: UploadLedger, path: Path, blob_name: str) -> str:
        """Upload one file (e.g. a static ffmpeg) into the input container, unless an
        identical blob is there; return a read-only SAS URL."""
        with azure_errors(f"upload {blob_name}"):
            self._upload(ledger, Path(path), blob_name, max_concurrency=min(8, self.upload_concurrency))
            return self.blob_sas_url(self.containers.input, blob_name)

    # -- the output container's small blobs ------------------------------------------------

    def read_output_blob(self, blob_name: str) -> bytes | None:
        """A (small) blob of the output container, or ``None`` if it does not exist."""
        blob = blob_client(self.service, self.containers.output, blob_name)
        with azure_errors(f"read blob {blob_name}"):
            try:
                data: bytes = blob.download_blob().readall()
            except az.ResourceNotFoundError as exc:
                _close_response(exc)
                return None
            return data

    def write_output_blob(self, blob_name: str, data: bytes) -> None:
        """Write a small blob (e.g. the job manifest) into the output container."""
        blob = blob_client(self.service, self.containers.output, blob_name)
        with azure_errors(f"write blob {blob_name}"):
            blob.upload_blob(
                data, overwrite=True, content_settings=ContentSettings(content_type="application/json")
            )

    def list_output_blobs(self, prefix: str) -> list[str]:
        """Names of the output container's blobs under ``prefix`` (none if the container
        does not exist)."""
        container = self.service.get_container_client(self.containers.output)
        with azure_errors(f"list the blobs of container {self.containers.output}"):
            try:
                return [str(b.name) for b in container.list_blobs(name_starts_with=prefix)]
            except az.ResourceNotFoundError:
                return []

    def delete_output_blobs(self, prefix: str) -> None:
        """Delete the output container's blobs under ``prefix`` (those already gone too)."""
        container = self.service.get_container_client(self.containers.output)
        with azure_errors(f"delete the blobs under {prefix}"):
            for name in self.list_output_blobs(prefix):
                with contextlib.suppress(az.ResourceNotFoundError):
                    container.delete_blob(name)

    # -- download -----------------------------------------------------------------------

    def download(self, item: WorkItem) -> Download:
        """Download every output of ``item`` to ``item.outputs`` (each to a temporary name,
        then an atomic rename). If one fails, those of the item already renamed are removed
        again: an item's outputs are there all together or not at all."""
        done: list[Path] = []
        size = 0
        for name, target in zip(names.output_blobs(item.relative_outputs), item.outputs, strict=True):
            download = self.download_blob(name, target)
            if not download.ok:
                for path in done:
                    with contextlib.suppress(OSError):
                        path.unlink()
                return download
            done.append(target)
            size += download.size
        return Download(size=size)

    def download_blob(self, name: str, target: Path) -> Download:
        """Download one blob of the output container to ``target`` (through a temporary
        name, then an atomic rename)."""
        tmp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.part")
        out = self.containers.output
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            blob = blob_client(self.service, out, name)
            with open(tmp, "wb") as f:
                size = blob.download_blob(max_concurrency=2).readinto(f)
            os.replace(tmp, target)
            return Download(size=size)
        except az.ResourceNotFoundError as exc:
            _close_response(exc)
            return Download(f"output blob {name!r} not found in container {out}")
        except az.AzureError as exc:
            _close_response(exc)
            return Download(redact(f"downloading blob {name!r} failed: {type(exc).__name__}: {exc}"))
        except OSError as exc:
            return Download(f"writing {str(target)!r} failed: {exc}")
        finally:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)


def _identical_exists(staging: Staging, ledger: UploadLedger, blob_name: str, size: int, md5: bytes) -> bool:
    """Whether the input container holds this content under ``blob_name`` already: known
    to the session's ledger, or (a persistent container) with the same size and MD5."""
    known = ledger.get(blob_name)
    if known is not None:
        return known == (size, md5)
    if not staging.containers.persistent_input:
        return False  # a fresh session container holds only what this session put there
    blob = blob_client(staging.service, staging.containers.input, blob_name)
    try:
        props = blob.get_blob_properties()
    except az.ResourceNotFoundError:
        return False
    remote_md5 = props.content_settings.content_md5
    return props.size == size and remote_md5 is not None and bytes(remote_md5) == md5


def _sas_window(expiry: dt.datetime, *, delegated: bool) -> tuple[dt.datetime, dt.datetime]:
    """When a SAS made now is valid: from a little before now (clocks that run behind) to
    ``expiry``, at most 7 days for a user-delegation SAS."""
    start = dt.datetime.now(dt.UTC) - CLOCK_SKEW
    return start, min(expiry, start + MAX_DELEGATION) if delegated else expiry


def _map(fn: Callable[[WorkItem], T], items: Sequence[WorkItem], workers: int, name: str) -> Iterator[T]:
    """``fn`` of each item, in order, ``workers`` at a time; at most four calls per worker
    are queued ahead (``Executor.map`` would queue a future for every item at once: a
    few hundred bytes each, for the whole run)."""
    if len(items) == 1 or workers == 1:
        yield from (fn(i) for i in items)
        return
    pool = ContextExecutor(max_workers=min(workers, len(items)), thread_name_prefix=name)
    window: collections.deque[Future[T]] = collections.deque()
    try:
        for item in items:
            if len(window) >= 4 * workers:
                yield window.popleft().result()
            window.append(pool.submit(fn, item))
        while window:
            yield window.popleft().result()
    except BaseException:
        for fut in window:
            fut.cancel()  # do not start the rest after a failure
        raise
    finally:
        pool.shutdown(wait=True)
