"""What the offline services share: a start/stop context manager, an HTTP server served from
a thread on a free loopback port, reading a request body, dropping a connection (a fault the
Batch emulator and the storage proxy both inject), and fresh account keys."""

from __future__ import annotations

import abc
import base64
import contextlib
import io
import logging
import secrets
import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Self

log = logging.getLogger(__name__)


class StartStop(abc.ABC):
    """A service that :meth:`start` brings up and :meth:`stop` takes down.

    As a context manager it starts on entry (``with X() as x`` binds what ``start``
    returns: the service itself) and stops on exit, whatever happened inside the block;
    it never swallows the block's exception.
    """

    @abc.abstractmethod
    def start(self) -> Self: ...

    @abc.abstractmethod
    def stop(self) -> None: ...

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def drop_connection(handler: BaseHTTPRequestHandler) -> None:
    """End ``handler``'s connection without an answer, as a network fault does."""
    handler.close_connection = True
    with contextlib.suppress(OSError):
        handler.connection.shutdown(socket.SHUT_RDWR)


def new_account_key() -> str:
    """A fresh random account key: 64 random bytes in base64, the form of Azure Storage and
    Batch account keys. Each offline account gets its own, so no key is ever published."""
    return base64.b64encode(secrets.token_bytes(64)).decode("ascii")


class QuietServer(ThreadingHTTPServer):
    """The offline services' HTTP server: a thread per connection, none waited for at
    close, a deep listen queue (the default 5 drops SYNs of concurrent clients: 1 s
    stalls), and a hung-up client logged at DEBUG rather than a traceback on stderr."""

    daemon_threads = True
    block_on_close = False
    request_queue_size = 256

    def handle_error(self, request: object, client_address: object) -> None:
        import sys

        log.debug(
            "%s: a connection from %s ended with %r", type(self).__name__, client_address, sys.exc_info()[1]
        )


class LoopbackServer(StartStop):
    """A ``ThreadingHTTPServer`` (made by :meth:`_bind`) served from a daemon thread until
    :meth:`stop`; :attr:`port` is where it listens."""

    def __init__(self) -> None:
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @abc.abstractmethod
    def _bind(self) -> ThreadingHTTPServer:
        """A new server, bound to a free port on 127.0.0.1, not serving yet."""

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError(f"{type(self).__name__} is not started")
        return int(self._server.server_address[1])

    def start(self) -> Self:
        if self._server is not None:
            raise RuntimeError(f"{type(self).__name__} is already started")
        server = self._bind()
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.1}, name=type(self).__name__, daemon=True
        )
        self._thread.start()
        log.info("%s serving on 127.0.0.1:%d", type(self).__name__, self.port)
        return self

    def stop(self) -> None:
        """Stop serving; harmless twice."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)


def read_body(
    rfile: io.BufferedIOBase,
    length: str | None,
    transfer_encoding: str,
    *,
    block: int = 256 * 1024,
    carried: Callable[[int], None] | None = None,
) -> bytes | None:
    """A request's body from ``rfile``: ``length`` bytes (the ``Content-Length``), or the
    chunks of a ``chunked`` ``transfer_encoding``; None when it has neither. ``carried`` is
    told the size of each piece read (``block`` bytes at most, for a fixed length)."""
    note = carried or (lambda _size: None)
    parts: list[bytes] = []
    if length is not None:
        remaining = int(length)
        while remaining > 0:
            piece = rfile.read(min(remaining, block))
            if not piece:
                break
            note(len(piece))
            parts.append(piece)
            remaining -= len(piece)
        return b"".join(parts)
    if "chunked" not in transfer_encoding.lower():
        return None
    while size := int(rfile.readline().split(b";")[0].strip() or b"0", 16):
        parts.append(rfile.read(size))
        note(size)
        rfile.readline()
    while rfile.readline() not in (b"\r\n", b"\n", b""):
        pass
    return b"".join(parts)
