"""Running things on emulated nodes: the node image, resource files, command lines, output files.

A node is a directory ``nodes/<pool>/<node>/`` with ``shared/``, ``startup/``,
``workitems/<job>/job-1/<task>/`` and ``bin/``. ``bin/`` comes first on PATH and is the
"node image": ``ffmpeg`` (the host's, or imageio-ffmpeg's), and shims for ``apt-get``,
``apt`` and ``sudo`` so that the usual start task
``/bin/bash -c "sudo apt-get update && sudo apt-get install -y ffmpeg"`` succeeds
without touching the host.

Command lines run like Linux Batch runs them: not under a shell. The command line is
split shell-like (``shlex``) and the program is executed directly; tasks that want
shell features wrap themselves in ``/bin/bash -c "..."``, as on the service.
"""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import re
import shlex
import shutil
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from batch_transcode._errors import FFmpegNotFoundError
from batch_transcode._ffmpeg import find_ffmpeg as _library_find_ffmpeg
from batch_transcode._redact import redact
from batch_transcode.testing._proxy import NODE_USER_AGENT

if TYPE_CHECKING:
    from azure.storage.blob import ContainerClient

LOG = logging.getLogger(__name__)

JSON = dict[str, Any]

APT_SHIM = """#!/bin/sh
# Emulated node image: packages are preinstalled; apt only reports it.
case "$1" in
  update) echo "Reading package lists... Done" ;;
  install|upgrade|dist-upgrade)
    shift
    for p in "$@"; do
      case "$p" in -*) ;; *) echo "$p is already the newest version." ;; esac
    done ;;
  *) ;;
esac
exit 0
"""

SUDO_SHIM = """#!/bin/sh
# Emulated node image: tasks already run with the rights they need.
while [ $# -gt 0 ]; do
  case "$1" in
    -u|-g|-C|-h|-p|-U|-r|-t) shift 2 ;;
    --) shift; break ;;
    -*) shift ;;
    *) break ;;
  esac
done
exec "$@"
"""


def find_ffmpeg() -> str | None:
    """The ffmpeg the node image links to (the library's choice), or None: the node image
    then has no ffmpeg, and tasks that call it fail like on a node without it."""
    try:
        return _library_find_ffmpeg()
    except FFmpegNotFoundError:
        return None


def make_node_image(bin_dir: Path, ffmpeg: str | None) -> None:
    """Fill a node's ``bin/`` (ffmpeg symlink, apt/apt-get/sudo shims)."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    for name, text in (("apt-get", APT_SHIM), ("apt", APT_SHIM), ("sudo", SUDO_SHIM)):
        p = bin_dir / name
        p.write_text(text)
        p.chmod(0o755)
    if ffmpeg:
        link = bin_dir / "ffmpeg"
        if not link.exists():
            link.symlink_to(ffmpeg)


class PreparationError(Exception):
    """A resource file could not be fetched (-> failureInfo with the service's code)."""

    def __init__(self, code: str, message: str, category: str = "usererror") -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.category = category


def _safe_join(base: Path, rel: str) -> Path:
    target = (base / rel).resolve()
    if base.resolve() not in (target, *target.parents):
        raise PreparationError("ResourceFileCreateFailed", f"file path '{rel}' leaves the task directory")
    return target


#: Attempts of one resource file download: the node agent retries transient storage errors.
DOWNLOAD_ATTEMPTS = 5
#: The storage REST version nodes send with bearer tokens (OAuth needs 2017-11-09 or later:
#: https://learn.microsoft.com/rest/api/storageservices/authorize-with-azure-active-directory).
STORAGE_VERSION = "2021-08-06"


@dataclass(frozen=True)
class NodeStorage:
    """How nodes reach Blob Storage: the CA to trust for https (``ca_bundle``) and the
    user-assigned identities nodes may use (``identityReference``), as ARM resource id ->
    principal id (the ``oid`` of the identity's tokens)."""

    ca_bundle: str | None = None
    identities: dict[str, str] = field(default_factory=dict)
    #: The proxy (``http://127.0.0.1:PORT``) that answers for public host names in intercept
    #: mode: nodes reach ``https://{account}.blob.core.windows.net`` URLs through it.
    proxy: str | None = None

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.ca_bundle)

    def proxies(self, url: str) -> dict[str, str]:
        """The proxies for ``url``: :attr:`proxy` for a host name, none for loopback."""
        host = urlsplit(url).hostname or ""
        if self.proxy is None or host in ("127.0.0.1", "localhost", "::1"):
            return {}
        return {"http": self.proxy, "https": self.proxy}

    def client_options(self, url: str = "") -> dict[str, Any]:
        options: dict[str, Any] = {"connection_verify": self.ca_bundle} if self.ca_bundle else {}
        if self.proxies(url):
            options["proxies"] = self.proxies(url)
        return options

    def open(self, request: urllib.request.Request, timeout: float) -> Any:
        """``urlopen`` as a node: through :attr:`proxy` for a host name."""
        https = request.full_url.lower().startswith("https:")
        handlers: list[urllib.request.BaseHandler] = [
            urllib.request.ProxyHandler(self.proxies(request.full_url))
        ]
        if https:
            handlers.append(urllib.request.HTTPSHandler(context=self.ssl_context()))
        return urllib.request.build_opener(*handlers).open(request, timeout=timeout)

    def credential(self, reference: JSON | None, pool_identities: Iterable[str]) -> Any:
        """The token credential of the identity ``reference`` names, or None without one.
        A node can only use an identity its pool has: otherwise the task fails while
        preparing, with ``UserAssignedIdentityNotFound`` (the emulator's code: the service
        documents none for this case; what matters to clients is that the task fails with
        a ``failureInfo`` before its command line runs)."""
        if not reference:
            return None
        from batch_transcode.testing._entra import OfflineCredential

        resource_id = str(reference.get("resourceId") or "")
        wanted = resource_id.lower()
        if wanted not in {i.lower() for i in pool_identities}:
            raise PreparationError(
                "UserAssignedIdentityNotFound" if resource_id else "InvalidIdentityReference",
                f"The identity '{resource_id}' is not assigned to the pool of this compute node.",
            )
        principal = next((p for rid, p in self.identities.items() if rid.lower() == wanted), None)
        if principal is None:
            raise PreparationError(
                "UserAssignedIdentityNotFound", f"The identity '{resource_id}' does not exist."
            )
        return OfflineCredential(principal)


def _download_http(url: str, dest: Path, storage: NodeStorage, credential: Any = None) -> None:
    """GET ``url`` into ``dest``; 5xx answers and connection errors are tried again with a
    short backoff, as the node agent does; a 4xx fails at once. With ``credential`` (a
    node identity) the request carries its bearer token instead of relying on a SAS."""
    for attempt in range(1, DOWNLOAD_ATTEMPTS + 1):
        headers = {"User-Agent": NODE_USER_AGENT}
        if credential is not None:
            from batch_transcode.testing._entra import STORAGE_AUDIENCE

            token = credential.get_token(f"{STORAGE_AUDIENCE}/.default").token
            headers.update({"Authorization": f"Bearer {token}", "x-ms-version": STORAGE_VERSION})
        request = urllib.request.Request(url, headers=headers)  # noqa: S310 - http(s) URLs only
        try:
            with (
                storage.open(request, timeout=60) as resp,
                open(dest, "wb") as out,
            ):
                shutil.copyfileobj(resp, out)
            return
        except urllib.error.HTTPError as exc:
            exc.close()
            if exc.code < 500 or attempt == DOWNLOAD_ATTEMPTS:
                code = {404: "BlobNotFound", 403: "BlobAccessDenied"}.get(exc.code, "BlobDownloadMiscError")
                raise PreparationError(code, f"Download of {redact(url)} failed: HTTP {exc.code}") from exc
        except ValueError as exc:  # http.client.InvalidURL: a URL no HTTP client sends
            raise PreparationError(
                "BlobDownloadMiscError",
                f"Download of {redact(url)} failed: the URL has characters that must be percent-encoded",
            ) from exc
        except OSError as exc:
            if attempt == DOWNLOAD_ATTEMPTS:
                raise PreparationError(
                    "BlobDownloadMiscError", f"Download of {redact(url)} failed: {exc}", "servererror"
                ) from exc
        LOG.debug("resource file download of %s failed (attempt %d); retrying", redact(url), attempt)
        time.sleep(0.05 * 2**attempt)


def download_resource_files(
    files: Iterable[JSON],
    wd: Path,
    storage: NodeStorage | None = None,
    pool_identities: Iterable[str] = (),
) -> None:
    """Fetch ``resourceFiles`` into the working directory, as the node agent does: through
    their (SAS) URLs, or as the node identity their ``identityReference`` names."""
    storage = storage or NodeStorage()
    pool_identities = list(pool_identities)
    for rf in files:
        credential = storage.credential(rf.get("identityReference"), pool_identities)
        file_mode = rf.get("fileMode")
        written: list[Path] = []
        if rf.get("autoStorageContainerName"):
            raise PreparationError(
                "BlobAccessDenied",
                "autoStorageContainerName needs an auto-storage account, which the emulator does not have",
            )
        if rf.get("httpUrl"):
            url = rf["httpUrl"]
            rel = rf.get("filePath")
            if not rel:
                raise PreparationError("ResourceFileCreateFailed", "filePath is required with httpUrl")
            dest = _safe_join(wd, rel)
            dest.parent.mkdir(parents=True, exist_ok=True)
            _download_http(url, dest, storage, credential)
            written.append(dest)
        elif rf.get("storageContainerUrl"):
            written.extend(_download_container(rf, wd, storage, credential))
        else:
            raise PreparationError(
                "ResourceFileCreateFailed", "a resource file needs httpUrl or storageContainerUrl"
            )
        if file_mode:
            for p in written:
                with contextlib.suppress(ValueError, OSError):
                    p.chmod(int(str(file_mode), 8))


def _node_container(url: str, storage: NodeStorage, credential: Any) -> ContainerClient:
    """A container client as a node uses one: a few quick retries, the node's User-Agent
    (its transfers do not cross the client's link), ``credential`` (a node identity's)
    or the SAS in ``url``."""
    from azure.storage.blob import ContainerClient

    return ContainerClient.from_container_url(
        url,
        credential=credential,
        retry_total=2,
        retry_backoff_factor=0.2,
        user_agent=NODE_USER_AGENT,
        **storage.client_options(url),
    )


def _download_container(rf: JSON, wd: Path, storage: NodeStorage, credential: Any) -> list[Path]:
    from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ResourceNotFoundError

    url = rf["storageContainerUrl"]
    prefix = rf.get("blobPrefix") or None
    base = _safe_join(wd, rf.get("filePath") or ".")
    written: list[Path] = []
    try:
        with _node_container(url, storage, credential) as cc:
            for blob in cc.list_blobs(name_starts_with=prefix):
                dest = _safe_join(base, blob.name)
                dest.parent.mkdir(parents=True, exist_ok=True)
                with open(dest, "wb") as out:
                    cc.download_blob(blob.name).readinto(out)
                written.append(dest)
    except ResourceNotFoundError as exc:
        raise PreparationError("BlobNotFound", f"Container {redact(url)} not found") from exc
    except ClientAuthenticationError as exc:
        raise PreparationError("BlobAccessDenied", f"Access to {redact(url)} denied") from exc
    except HttpResponseError as exc:
        code = "BlobAccessDenied" if exc.status_code == 403 else "BlobDownloadMiscError"
        raise PreparationError(code, f"Listing {redact(url)} failed: HTTP {exc.status_code}") from exc
    return written


def launch(
    command_line: str, *, cwd: Path, env: dict[str, str], stdout: Path, stderr: Path
) -> subprocess.Popen[bytes]:
    """Start a command line the way the Linux node agent does (no shell; argv from shlex)."""
    argv = shlex.split(command_line)
    if not argv:
        raise PreparationError("CommandLaunchFailed", "the command line is empty")
    program = argv[0]
    if "/" not in program:
        resolved = shutil.which(program, path=env.get("PATH"))
        if resolved is None:
            raise PreparationError(
                "CommandProgramNotFound", f"The specified command program is not found: {program}"
            )
        argv[0] = resolved
    with open(stdout, "ab") as out, open(stderr, "ab") as err:
        try:
            return subprocess.Popen(
                argv,
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,
            )
        except FileNotFoundError as exc:
            raise PreparationError(
                "CommandProgramNotFound", f"The specified command program is not found: {program}"
            ) from exc
        except OSError as exc:
            raise PreparationError(
                "CommandLaunchFailed", f"Failed to launch the command line: {exc}"
            ) from exc


_WILDCARD = re.compile(r"[*?\[]")


def _match(pattern: str, wd: Path) -> list[tuple[Path, str]]:
    """Files matched by an outputFiles pattern, each with its blob-relative name."""
    pattern = pattern.replace("\\", "/")
    full = os.path.normpath(os.path.join(str(wd), pattern))
    if not _WILDCARD.search(pattern):
        p = Path(full)
        return [(p, p.name)] if p.is_file() else []
    # The non-wildcard directory prefix of the pattern is the base of the relative blob names.
    parts = pattern.split("/")
    base_parts: list[str] = []
    for part in parts:
        if _WILDCARD.search(part):
            break
        base_parts.append(part)
    base = Path(os.path.normpath(os.path.join(str(wd), *base_parts))) if base_parts else wd
    out: list[tuple[Path, str]] = []
    for hit in sorted(glob.glob(full, recursive=True)):
        p = Path(hit)
        if p.is_file():
            out.append((p, p.relative_to(base).as_posix()))
    return out


def upload_output_files(
    outputs: Iterable[JSON],
    wd: Path,
    *,
    succeeded: bool,
    storage: NodeStorage | None = None,
    pool_identities: Iterable[str] = (),
) -> None:
    """Upload ``outputFiles`` whose uploadCondition holds, through their container (SAS)
    URL or as the node identity their ``identityReference`` names; raise PreparationError
    on failure."""
    from azure.core.exceptions import AzureError
    from azure.storage.blob import ContentSettings

    storage = storage or NodeStorage()
    pool_identities = list(pool_identities)
    for spec in outputs:
        condition = ((spec.get("uploadOptions") or {}).get("uploadCondition") or "tasksuccess").lower()
        if condition == "tasksuccess" and not succeeded:
            continue
        if condition == "taskfailure" and succeeded:
            continue
        container = (spec.get("destination") or {}).get("container") or {}
        url = container.get("containerUrl")
        if not url:
            continue
        credential = storage.credential(container.get("identityReference"), pool_identities)
        pattern = spec["filePattern"]
        path = container.get("path")
        has_wildcard = bool(_WILDCARD.search(pattern))
        headers = {h["name"].lower(): h.get("value", "") for h in container.get("uploadHeaders") or []}
        settings = ContentSettings(
            content_type=headers.get("content-type"),
            content_encoding=headers.get("content-encoding"),
            content_language=headers.get("content-language"),
            content_disposition=headers.get("content-disposition"),
            cache_control=headers.get("cache-control"),
        )
        try:
            with _node_container(url, storage, credential) as cc:
                for file, rel in _match(pattern, wd):
                    name = (f"{path.rstrip('/')}/{rel}" if path else rel) if has_wildcard else (path or rel)
                    with open(file, "rb") as data:
                        cc.upload_blob(name, data, overwrite=True, content_settings=settings)
                    LOG.debug("uploaded %s to %s", file.name, redact(url))
        except (AzureError, OSError) as exc:
            raise PreparationError(
                "FileUploadError", f"Upload of '{pattern}' to {redact(url)} failed: {type(exc).__name__}"
            ) from exc
