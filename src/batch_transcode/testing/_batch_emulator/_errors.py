"""Batch service errors in the service's wire format."""

from __future__ import annotations

import json
from typing import Any


class BatchServiceError(Exception):
    """An error the emulated service answers with (status, code, message, values)."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        values: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.values = dict(values or {})
        self.headers = dict(headers or {})

    def body(self, endpoint: str, request_id: str, time: str) -> bytes:
        doc: dict[str, Any] = {
            "odata.metadata": (
                f"{endpoint}/$metadata#Microsoft.Azure.Batch.Protocol.Entities.Container.errors/@Element"
            ),
            "code": self.code,
            "message": {"lang": "en-US", "value": f"{self.message}\nRequestId:{request_id}\nTime:{time}"},
        }
        if self.values:
            doc["values"] = [{"key": k, "value": v} for k, v in self.values.items()]
        return json.dumps(doc).encode("utf-8")


#: The messages of the errors about one kind of resource, by error code.
_MESSAGES = {
    "PoolNotFound": "The specified pool does not exist.",
    "JobNotFound": "The specified job does not exist.",
    "TaskNotFound": "The specified task does not exist.",
    "NodeNotFound": "The specified node does not exist.",
    "FileNotFound": "The specified file does not exist.",
    "PoolExists": "The specified pool already exists.",
    "JobExists": "The specified job already exists.",
    "TaskExists": "The specified task already exists.",
    "PoolBeingDeleted": "The specified pool has been marked for deletion and is being reclaimed.",
    "JobBeingDeleted": "The specified job has been marked for deletion and is being garbage collected.",
}


def _about(status: int, code: str) -> BatchServiceError:
    return BatchServiceError(status, code, _MESSAGES[code])


def not_found(kind: str, ident: str) -> BatchServiceError:
    """``PoolNotFound`` / ``JobNotFound`` / ``TaskNotFound`` / ``NodeNotFound`` / ``FileNotFound``."""
    return _about(404, f"{kind}NotFound")


def exists(kind: str) -> BatchServiceError:
    """``PoolExists`` / ``JobExists`` / ``TaskExists``."""
    return _about(409, f"{kind}Exists")


def being_deleted(kind: str) -> BatchServiceError:
    """``PoolBeingDeleted`` / ``JobBeingDeleted``."""
    return _about(409, f"{kind}BeingDeleted")


def invalid_query(name: str, value: str, reason: str | None = None) -> BatchServiceError:
    """``InvalidQueryParameterValue`` for the query parameter ``name``."""
    values = {"QueryParameterName": name, "QueryParameterValue": value}
    if reason is not None:
        values["Reason"] = reason
    return BatchServiceError(
        400,
        "InvalidQueryParameterValue",
        "Value for one of the query parameters specified in the request URI is invalid.",
        values,
    )


def invalid_value(prop: str, value: object, reason: str) -> BatchServiceError:
    return BatchServiceError(
        400,
        "InvalidPropertyValue",
        "The value provided for one of the properties in the request body is invalid.",
        {"PropertyName": prop, "PropertyValue": str(value), "Reason": reason},
    )
