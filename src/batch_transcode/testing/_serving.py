"""What the offline services share: a start/stop context manager, dropping a connection (a
fault the Batch emulator and the storage proxy both inject), and fresh account keys."""

from __future__ import annotations

import abc
import base64
import contextlib
import secrets
import socket
from http.server import BaseHTTPRequestHandler
from typing import Self


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
