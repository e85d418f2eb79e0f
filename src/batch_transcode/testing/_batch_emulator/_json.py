"""JSON documents as the emulator keeps them, and a walk over their objects."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

JSON = dict[str, Any]


def map_objects(node: Any, transform: Callable[[JSON], Any]) -> Any:
    """``node`` with ``transform`` applied to it if it is an object, to each object in it
    if it is a list (at any depth of lists), and other values as they are. ``transform``
    walks into the object's own values itself, where it should."""
    if isinstance(node, list):
        return [map_objects(item, transform) for item in node]
    if not isinstance(node, dict):
        return node
    return transform(node)
