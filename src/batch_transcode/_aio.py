"""asyncio support: blocking work run off the event loop, to the end.

A thread cannot be interrupted, so work started in one (opening a session, tearing
it down) is always awaited to its end, even when the awaiting task is cancelled;
the cancellation is raised once the work is over. Nothing is left half-done by a
cancelled ``await``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TypeVar

__all__ = ["run_to_end", "wait_uncancellable"]

T = TypeVar("T")


async def wait_uncancellable(future: asyncio.Future[T]) -> tuple[T, bool]:
    """Await ``future`` even if the awaiting task is cancelled meanwhile; return its
    result and whether a cancellation arrived (the caller re-raises it when done)."""
    cancelled = False
    while True:
        try:
            return await asyncio.shield(future), cancelled
        except asyncio.CancelledError:
            if future.cancelled():  # pragma: no cover - nobody else holds the future
                raise
            cancelled = True


async def run_to_end(fn: Callable[[], T]) -> T:
    """``fn()`` in a worker thread; a cancellation of the awaiting task waits for
    ``fn`` to finish, then raises :class:`asyncio.CancelledError`."""
    result, cancelled = await wait_uncancellable(asyncio.ensure_future(asyncio.to_thread(fn)))
    if cancelled:
        raise asyncio.CancelledError
    return result
