"""What the offline services share: a start/stop context manager, and dropping a
connection (a fault the Batch emulator and the storage proxy both inject)."""

from __future__ import annotations

import abc
import contextlib
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
