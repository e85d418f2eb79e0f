"""The one place where Azure SDK exceptions become batch_transcode exceptions.

::

    ClientAuthenticationError (401, bad token)      -> AuthenticationError
    HttpResponseError 403 (missing role, bad SAS)   -> AuthenticationError (a missing
                                                       role: the message names the role)
    ServiceRequestError / ServiceResponseError      -> ServiceUnavailableError
    HttpResponseError 408/429/5xx                   -> ServiceUnavailableError
    any other azure.core AzureError                 -> AzureError (with the service's code)

Always ``raise translate(exc, ...) from exc``, or use :func:`azure_errors`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from azure.core import exceptions as az

from batch_transcode._errors import (
    AuthenticationError,
    AzureError,
    ServiceUnavailableError,
    TranscodeError,
)
from batch_transcode._redact import redact
from batch_transcode._retry import TRANSIENT_STATUSES

__all__ = ["GONE_CODES", "azure_errors", "error_code", "is_code", "is_gone", "translate"]


def error_code(exc: BaseException) -> str | None:
    """The service's error code (``PoolExists``, ``TaskExists``, ``ContainerNotFound``...), if any."""
    error = getattr(exc, "error", None)
    code = getattr(error, "code", None)
    if code:
        return str(code)
    model = getattr(exc, "model", None)
    code = getattr(model, "code", None)
    if code:
        return str(code)
    code = getattr(exc, "error_code", None)
    return str(code) if code else None


def is_code(exc: BaseException, *codes: str) -> bool:
    code = error_code(exc)
    return code is not None and code.lower() in {c.lower() for c in codes}


def _message(exc: BaseException) -> str:
    error = getattr(exc, "error", None)
    text = getattr(error, "message", None) or getattr(exc, "message", None) or str(exc)
    lines = [ln for ln in redact(str(text)).strip().splitlines() if ln.strip()]
    return lines[0][:500] if lines else type(exc).__name__


#: Codes with which the Batch service says a resource is gone or going (the REST API's
#: "Batch status and error codes" page), and Blob Storage's ContainerNotFound.
GONE_CODES = frozenset(
    {
        "JobNotFound",
        "PoolNotFound",
        "TaskNotFound",
        "NodeNotFound",
        "JobBeingDeleted",
        "PoolBeingDeleted",
        "ContainerNotFound",
        "BlobNotFound",
        "ContainerBeingDeleted",
    }
)


def is_gone(exc: BaseException) -> bool:
    """True when ``exc`` says the resource does not exist (any more): HTTP 404, or a
    "being deleted" code."""
    return isinstance(exc, az.ResourceNotFoundError) or is_code(exc, *GONE_CODES)


#: The 403 codes with which the services say a Microsoft Entra ID principal lacks a role:
#: Blob Storage's AuthorizationPermissionMismatch ("Blob Storage error codes",
#: https://learn.microsoft.com/rest/api/storageservices/blob-service-error-codes) and the
#: Batch data plane's AuthorizationFailure, each with the built-in role that grants what the
#: library does (https://learn.microsoft.com/azure/role-based-access-control/built-in-roles).
_STORAGE_ROLE = (
    "grant it the Storage Blob Data Contributor role on the storage account (or a custom "
    "role with the blob read, write, delete and generateUserDelegationKey actions)"
)
_BATCH_ROLE = (
    "grant it the Azure Batch Data Contributor role on the Batch account (or the account's "
    "custom role with the pool, job and task actions)"
)


def _from_storage(exc: BaseException) -> bool:
    """Whether Azure Storage sent the error (its responses carry ``x-ms-error-code``;
    Batch puts its code in the body)."""
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None) or {}
    return "x-ms-error-code" in {str(k).lower() for k in headers}


#: What to check when a service refuses a key: the variables, and where the key is shown.
_CHECK_STORAGE_KEY = (
    "Check AZURE_STORAGE_KEY, or the AccountKey in AZURE_STORAGE_CONNECTION_STRING (the storage "
    "account's Access keys page shows it)"
)
_CHECK_BATCH_KEY = (
    "Check AZURE_BATCH_ACCOUNT and AZURE_BATCH_ACCESS_KEY (the Batch account's Keys page shows it)"
)


def _missing_role(exc: BaseException, code: str | None, status: object) -> str | None:
    """What to grant, when ``exc`` says the signed-in principal lacks a data-plane role."""
    if status != 403 or code is None:
        return None
    if code == "AuthorizationPermissionMismatch" or (code == "AuthorizationFailure" and _from_storage(exc)):
        return _STORAGE_ROLE
    if code == "AuthorizationFailure":
        return _BATCH_ROLE
    return None


def translate(
    exc: BaseException,
    what: str,
    *,
    job_id: str | None = None,
    task_id: str | None = None,
    pool_id: str | None = None,
) -> TranscodeError:
    """The batch_transcode error for ``exc``, raised while doing ``what`` ("create pool bt-...");
    an :class:`AzureError` carries the ids given."""
    if isinstance(exc, TranscodeError):
        return exc
    ids = {"job_id": job_id, "task_id": task_id, "pool_id": pool_id}
    code = error_code(exc)
    status = getattr(exc, "status_code", None)
    detail = _message(exc)
    role = _missing_role(exc, code, status)
    if role is not None:
        return AuthenticationError(
            f"{what}: the service refused the signed-in Microsoft Entra ID principal, which "
            f"lacks a role ({code}: {detail}); {role}, then run again (role assignments take a few minutes "
            "to apply; docs/azure.md lists the roles)",
            code=code,
            **ids,
        )
    if isinstance(exc, az.ClientAuthenticationError) or status == 403:
        check = _CHECK_STORAGE_KEY if _from_storage(exc) else _CHECK_BATCH_KEY
        return AuthenticationError(
            f"{what}: the service refused the credentials "
            f"({code or status or type(exc).__name__}: {detail}). {check}, or, with "
            "Microsoft Entra ID, that you are signed in and hold the roles listed in docs/azure.md",
            code=code,
            **ids,
        )
    if isinstance(exc, (az.ServiceRequestError, az.ServiceResponseError)):
        return ServiceUnavailableError(
            f"{what}: the service could not be reached ({type(exc).__name__}: {detail}). "
            "Check the endpoint and your network, then run again",
            code=code,
            **ids,
        )
    if (
        isinstance(exc, az.HttpResponseError)
        and status is not None
        and (status in TRANSIENT_STATUSES or status >= 500)
    ):
        return ServiceUnavailableError(
            f"{what}: the service kept failing (HTTP {status}{f' {code}' if code else ''}: {detail}); "
            "try again later",
            code=code,
            **ids,
        )
    if isinstance(exc, az.AzureError):
        return AzureError(
            f"{what} failed ({f'HTTP {status} ' if status else ''}{code or type(exc).__name__}: {detail})",
            code=code,
            **ids,
        )
    return AzureError(f"{what} failed ({type(exc).__name__}: {detail})", code=code)


@contextmanager
def azure_errors(what: str) -> Iterator[None]:
    """Translate any Azure SDK exception raised in the block."""
    try:
        yield
    except az.AzureError as exc:
        raise translate(exc, what) from exc
