"""A map that is only taken from once it is built, and gives its memory back as it empties."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Generic, TypeVar

__all__ = ["Draining"]

K = TypeVar("K")
V = TypeVar("V")

#: Below this many entries a table is not worth remaking.
_SMALL = 1024


class Draining(Generic[K, V]):
    """A ``dict`` built once, then only popped from (the files of a run not reported
    yet). A dict never shrinks when its keys are popped: built with 100,000 entries its
    table stays 5 MB however few are left. This one is remade at its size whenever
    three quarters of what it held at the last remaking went (amortised O(1) a pop).
    Not thread-safe: its owner holds the lock, as for a dict."""

    __slots__ = ("_built", "_entries")

    def __init__(self, entries: Iterable[tuple[K, V]]) -> None:
        self._entries: dict[K, V] = dict(entries)
        self._built = len(self._entries)

    def pop(self, key: K) -> V | None:
        """The value of ``key``, removed (``None`` if it is not there)."""
        value = self._entries.pop(key, None)
        if self._built > _SMALL and len(self._entries) * 4 < self._built:
            self._entries = dict(self._entries)
            self._built = len(self._entries)
        return value

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"<Draining: {len(self._entries)} of {self._built} left>"
