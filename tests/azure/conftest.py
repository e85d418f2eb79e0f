"""Fixtures for the Azure backend tests.

Validate request bodies against the official Batch REST spec (strict: no unknown fields)."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from functools import cache
from importlib.resources import files
from typing import Any

import jsonschema
import pytest

# The official spec, as shipped inside the package for the emulator.
SPEC = files("batch_transcode.testing") / "_spec" / "batch-service-2025-06-01.json"


@cache
def _definitions() -> dict[str, Any]:
    spec = json.loads(SPEC.read_text(encoding="utf-8"))
    defs = copy.deepcopy(spec["definitions"])
    for schema in defs.values():
        if schema.get("type") == "object" and "properties" in schema:
            schema.setdefault("additionalProperties", False)  # a misspelt field is an error here
    return dict(defs)


def validate(body: dict[str, Any], definition: str) -> None:
    """Raise jsonschema.ValidationError if ``body`` does not match ``definition``."""
    schema = {"$ref": f"#/definitions/{definition}", "definitions": _definitions()}
    jsonschema.Draft4Validator(schema, format_checker=jsonschema.FormatChecker()).validate(body)


@pytest.fixture
def spec_validate() -> Callable[[dict[str, Any], str], None]:
    """``spec_validate(model.as_dict(), "BatchPoolCreateOptions")``."""
    return validate


@pytest.fixture(autouse=True)
def _fast_retries(fast_retries: None) -> None:
    """Every test here retries without waiting (``fast_retries`` in tests/conftest.py)."""
