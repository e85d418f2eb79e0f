"""Finding and running Azurite's blob service (the official Azure Storage emulator)."""

from __future__ import annotations

import contextlib
import http.client
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from batch_transcode._errors import ConfigError

__all__ = [
    "AZURITE_ACCOUNT",
    "AZURITE_ACCOUNTS_ENV",
    "AZURITE_KEY",
    "AZURITE_VERSION",
    "AzuriteNotFoundError",
    "AzuriteProcess",
    "find_azurite",
    "free_port",
    "wait_for_http",
]

log = logging.getLogger(__name__)

#: The Azurite release the project pins (package.json) and tests against.
AZURITE_VERSION = "3.37.0"
#: Azurite's well-known development account and key (public, documented, not a secret).
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="

#: The environment variable that gives Azurite its accounts (``name:key1[:key2];...``) instead of
#: the development account ("Customized storage accounts & keys" in Azurite's README).
AZURITE_ACCOUNTS_ENV = "AZURITE_ACCOUNTS"

_EXE = "azurite-blob"


class AzuriteNotFoundError(ConfigError):
    """Azurite (``azurite-blob``) is not installed where batch_transcode looks for it."""


def _is_executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def _node_modules_candidates(start: Path) -> list[Path]:
    start = start.resolve()
    return [d / "node_modules" / ".bin" / _EXE for d in (start, *start.parents)]


def find_azurite() -> str:
    """Path of ``azurite-blob``: ``$AZURITE_BLOB``, then ``PATH``, then a
    ``node_modules/.bin`` in the current directory or a parent, or beside the
    package's source tree. Raise :class:`AzuriteNotFoundError` naming the fix."""
    looked: list[str] = []
    env = os.environ.get("AZURITE_BLOB", "").strip()
    if env:
        path = Path(env)
        if _is_executable(path):
            return str(path)
        looked.append(f"AZURITE_BLOB={env!r} (not an executable file)")
    on_path = shutil.which(_EXE)
    if on_path:
        return on_path
    looked.append(f"{_EXE} on PATH")
    candidates = _node_modules_candidates(Path.cwd())
    package_dir = Path(__file__).resolve().parent
    candidates += [c for c in _node_modules_candidates(package_dir) if c not in candidates]
    for candidate in candidates:
        if _is_executable(candidate):
            return str(candidate)
    looked.append("node_modules/.bin/azurite-blob in the current directory, the package's tree and parents")
    raise AzuriteNotFoundError(
        "Azurite (the Azure Storage emulator) was not found; looked for "
        + "; ".join(looked)
        + f". Install it with `npm install azurite@{AZURITE_VERSION}` (Node.js 18+; in the "
        "batch_transcode repository `npm ci` does it), or set AZURITE_BLOB to the path of "
        "node_modules/.bin/azurite-blob"
    )


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_for_http(
    host: str, port: int, *, timeout: float, alive: subprocess.Popen[bytes] | None = None, https: bool = False
) -> bool:
    """Poll until something answers HTTP on ``host:port`` (any status); False on timeout.

    ``alive``: the server's process; stop waiting when it exits.
    """
    import ssl

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if alive is not None and alive.poll() is not None:
            return False
        conn: http.client.HTTPConnection
        if https:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE  # only probing that it answers
            conn = http.client.HTTPSConnection(host, port, timeout=1.0, context=ctx)
        else:
            conn = http.client.HTTPConnection(host, port, timeout=1.0)
        try:
            conn.request("GET", "/")
            conn.getresponse().read()
            return True
        except (OSError, http.client.HTTPException):
            time.sleep(0.05)
        finally:
            conn.close()
    return False


class AzuriteProcess:
    """One ``azurite-blob`` process in its own process group, storing under ``location``.

    ``tls``: (certificate, key) PEM files: serve https and accept Microsoft Entra ID bearer
    tokens (Azurite's ``--oauth basic``, which needs https; it also answers Get User
    Delegation Key then). See "OAuth configuration" in Azurite's README.

    ``accounts``: storage account name -> key (base64) Azurite serves instead of the
    well-known development account, passed in ``AZURITE_ACCOUNTS`` (never on the command line,
    where other local users could read it).
    """

    def __init__(
        self,
        location: Path,
        *,
        exe: str | None = None,
        startup_timeout: float = 30.0,
        tls: tuple[str, str] | None = None,
        accounts: Mapping[str, str] | None = None,
    ) -> None:
        self.location = location
        self.tls = tls
        self._accounts = dict(accounts or {})
        self.exe = exe or find_azurite()
        self.startup_timeout = startup_timeout
        self.port = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_path = location / "azurite.log"

    @property
    def scheme(self) -> str:
        return "https" if self.tls is not None else "http"

    @property
    def account(self) -> str:
        """The storage account it serves (the first of ``accounts``, else the development one)."""
        return next(iter(self._accounts), AZURITE_ACCOUNT)

    @property
    def blob_endpoint(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}/{self.account}"

    def _environment(self) -> dict[str, str] | None:
        if not self._accounts:
            return None
        env = dict(os.environ)
        env[AZURITE_ACCOUNTS_ENV] = ";".join(f"{name}:{key}" for name, key in self._accounts.items())
        return env

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def start(self) -> None:
        self.location.mkdir(parents=True, exist_ok=True)
        last_error = ""
        for _attempt in range(3):  # a free port can be taken between probe and bind
            self.port = free_port()
            argv = [
                self.exe,
                "--skipApiVersionCheck",
                "--loose",
                "--silent",
                "--location",
                str(self.location / "data"),
                "--blobHost",
                "127.0.0.1",
                "--blobPort",
                str(self.port),
            ]
            if self.tls is not None:
                argv += ["--cert", self.tls[0], "--key", self.tls[1], "--oauth", "basic"]
            with open(self._log_path, "wb") as log_file:
                self._proc = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    env=self._environment(),
                )
            proc = self._proc
            if wait_for_http(
                "127.0.0.1", self.port, timeout=self.startup_timeout, alive=proc, https=self.tls is not None
            ):
                log.info("Azurite blob service at %s (pid %d)", self.blob_endpoint, proc.pid)
                return
            last_error = self._log_tail()
            self.stop()
            if "EADDRINUSE" not in last_error:
                break
        raise RuntimeError(f"Azurite did not start within {self.startup_timeout:.0f} s: {last_error}")

    def _log_tail(self) -> str:
        try:
            return self._log_path.read_text("utf-8", "replace")[-2000:].strip() or "(no output)"
        except OSError:
            return "(no output)"

    def stop(self) -> None:
        """Terminate the whole process group; harmless twice."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        # Azurite closes its server on SIGTERM ("successfully closed") but its timers can keep
        # node alive for a long time afterwards: give it a moment to flush, then kill.
        if sys.platform != "win32":
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGTERM)
        else:  # pragma: no cover
            proc.terminate()
        deadline = time.monotonic() + 3.0
        while proc.poll() is None and time.monotonic() < deadline:
            if "successfully closed" in self._log_tail():
                break
            time.sleep(0.05)
        if proc.poll() is None:
            if sys.platform != "win32":
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)
            else:  # pragma: no cover
                proc.kill()
        proc.wait()
        # node may leave children in the group: make sure none survive
        if sys.platform != "win32":
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
