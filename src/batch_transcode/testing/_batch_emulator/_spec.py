"""The official Batch REST spec: routes and request-body validation.

The spec (OpenAPI 2.0, api-version 2025-06-01) ships as package data in
``batch_transcode/testing/_spec``. Routes (method + path template -> operationId)
and the body schema of every operation are read from it, not written by hand.

Validation follows the service's contract: every object schema is closed
(``additionalProperties: false`` unless the spec declares ``additionalProperties``),
so a misspelled property is rejected like the service rejects it.
"""

from __future__ import annotations

import copy
import functools
import json
import re
from dataclasses import dataclass
from importlib import resources
from typing import Any

import jsonschema

from ._errors import BatchServiceError
from ._json import JSON, map_objects

API_VERSION = "2025-06-01"
SPEC_FILE = "batch-service-2025-06-01.json"


@functools.cache
def load_spec() -> JSON:
    """The parsed spec document (cached)."""
    text = resources.files("batch_transcode.testing").joinpath("_spec", SPEC_FILE).read_text("utf-8")
    spec: JSON = json.loads(text)
    return spec


@dataclass(frozen=True)
class Route:
    method: str
    template: str
    operation_id: str
    pattern: re.Pattern[str]
    params: tuple[str, ...]
    body_ref: str | None  # definition name of the body parameter
    body_required: bool


def _compile(template: str) -> tuple[re.Pattern[str], tuple[str, ...]]:
    params: list[str] = []
    regex = ""
    for part in re.split(r"(\{[^}]+\})", template):
        if part.startswith("{") and part.endswith("}"):
            name = part[1:-1]
            params.append(name)
            # filePath may contain slashes (e.g. wd/out/a.txt); ids may not.
            regex += f"(?P<{name}>.+)" if name == "filePath" else f"(?P<{name}>[^/]+)"
        else:
            regex += re.escape(part)
    return re.compile(f"^{regex}/?$"), tuple(params)


@functools.cache
def routes() -> tuple[Route, ...]:
    spec = load_spec()
    out: list[Route] = []
    for template, item in spec["paths"].items():
        pattern, params = _compile(template)
        for method, op in item.items():
            if method == "parameters":
                continue
            body_ref: str | None = None
            body_required = False
            for p in op.get("parameters", []):
                if p.get("in") == "body":
                    body_ref = p["schema"]["$ref"].rsplit("/", 1)[-1]
                    body_required = bool(p.get("required", False))
            out.append(
                Route(method.upper(), template, op["operationId"], pattern, params, body_ref, body_required)
            )
    # Literal segments beat parameters: /pools/{poolId}/resize before /pools/{poolId}/nodes/{nodeId}...
    out.sort(key=lambda r: (r.template.count("{"), -len(r.template)))
    return tuple(out)


def match_route(method: str, path: str) -> tuple[Route | None, dict[str, str], bool]:
    """Find the operation for ``method path``.

    Returns (route, path parameters, path_known). ``path_known`` is True when the path
    matched a template but not with this method.
    """
    path_known = False
    for route in routes():
        m = route.pattern.match(path)
        if not m:
            continue
        if route.method != method:
            path_known = True
            continue
        return route, dict(m.groupdict()), True
    return None, {}, path_known


def _close_schema(node: Any) -> Any:
    """Turn an OpenAPI 2.0 schema fragment into a closed JSON Schema fragment."""
    return map_objects(node, _close_object)


def _close_object(node: JSON) -> JSON:
    out: JSON = {}
    read_only = {
        name
        for name, sub in (node.get("properties") or {}).items()
        if isinstance(sub, dict) and sub.get("readOnly")
    }
    for key, value in node.items():
        if key.startswith("x-ms-") or key in ("description", "readOnly", "example", "discriminator"):
            continue
        if key == "required":
            # A response model's read-only properties (a job's creationTime, ...) are
            # "required" in the spec, but a request (Replace Job sends a BatchJob) never has them.
            required = [name for name in value if name not in read_only]
            if required:
                out[key] = required
            continue
        if key == "enum" and node.get("type") == "string":
            # The service accepts enum values in any casing ("pack", "Pack") and answers
            # in its own (see _defaults.ENUM_CASING).
            out["pattern"] = "^(?i:" + "|".join(re.escape(str(v)) for v in value) + ")$"
            continue
        if key == "format":
            # Formats are checked where the service checks them (durations, dates) by the handlers;
            # jsonschema's own format checks are off by default.
            continue
        if key == "properties":
            out[key] = {name: _close_schema(sub) for name, sub in value.items()}
        else:
            out[key] = _close_schema(value)
    if ("properties" in node or node.get("type") == "object") and "additionalProperties" not in node:
        out["additionalProperties"] = False
    # Refs in draft 4 ignore siblings; keep the ref alone so the description-only siblings do no harm.
    if "$ref" in out:
        return {"$ref": out["$ref"]}
    return out


@functools.cache
def _definitions() -> JSON:
    spec = load_spec()
    closed: JSON = {name: _close_schema(copy.deepcopy(d)) for name, d in spec["definitions"].items()}
    return closed


@functools.cache
def _validator(definition: str) -> jsonschema.Draft4Validator:
    schema = {"$ref": f"#/definitions/{definition}", "definitions": _definitions()}
    return jsonschema.Draft4Validator(schema)


def _path_of(error: jsonschema.ValidationError) -> str:
    parts: list[str] = []
    for p in error.absolute_path:
        if isinstance(p, int):
            parts.append(f"[{p}]")
        else:
            parts.append(("." if parts else "") + str(p))
    return "".join(parts)


def _type_name(definition: str, error: jsonschema.ValidationError) -> str:
    # Find the innermost definition name the error belongs to, for the message.
    name = definition
    for item in error.absolute_schema_path:
        if isinstance(item, str) and item in _definitions():
            name = item
    return name


def validate_body(definition: str, body: Any) -> None:
    """Validate ``body`` against ``#/definitions/<definition>``; raise the service's 400 on failure."""
    validator = _validator(definition)
    errors = sorted(validator.iter_errors(body), key=lambda e: (len(list(e.absolute_path)), str(e.message)))
    if not errors:
        return
    # Prefer the most specific error (deepest path); jsonschema's best_match is tuned for oneOf/anyOf.
    error = max(errors, key=lambda e: len(list(e.absolute_path)))
    where = _path_of(error)
    owner = _type_name(definition, error)
    if error.validator == "additionalProperties":
        allowed = set(error.schema.get("properties", {})) if isinstance(error.schema, dict) else set()
        extra = sorted(set(error.instance) - allowed) if isinstance(error.instance, dict) else []
        prop = extra[0] if extra else "?"
        full = f"{where}.{prop}" if where else prop
        raise BatchServiceError(
            400,
            "InvalidRequestBody",
            "The specified Request Body is not syntactically valid.",
            {
                "PropertyName": full,
                "Reason": (
                    f"The property '{prop}' does not exist on type '{owner}'. "
                    "Make sure to only use property names that are defined by the type."
                ),
            },
        )
    if error.validator == "required":
        match = re.search(r"'([^']+)' is a required property", error.message)
        prop = match.group(1) if match else "?"
        full = f"{where}.{prop}" if where else prop
        raise BatchServiceError(
            400,
            "MissingRequiredProperty",
            "A required property was not specified in the request body.",
            {"PropertyName": full},
        )
    if error.validator == "type":
        raise BatchServiceError(
            400,
            "InvalidRequestBody",
            "The specified Request Body is not syntactically valid.",
            {"PropertyName": where, "Reason": f"Invalid value for '{where}': {error.message}"},
        )
    raise BatchServiceError(
        400,
        "InvalidPropertyValue",
        "The value provided for one of the properties in the request body is invalid.",
        {"PropertyName": where, "PropertyValue": json.dumps(error.instance)[:200], "Reason": error.message},
    )
