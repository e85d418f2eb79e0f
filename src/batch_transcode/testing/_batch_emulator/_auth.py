"""Shared Key and bearer-token authentication, as the Batch service checks them."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable, Mapping
from urllib.parse import parse_qs

from ._errors import BatchServiceError

HEADERS_TO_SIGN = (
    "content-encoding",
    "content-language",
    "content-length",
    "content-md5",
    "content-type",
    "date",
    "if-modified-since",
    "if-match",
    "if-none-match",
    "if-unmodified-since",
    "range",
)


def string_to_sign(
    account: str, method: str, raw_path: str, raw_query: str, headers: Mapping[str, str]
) -> str:
    """The Shared Key string-to-sign of a Batch request.

    METHOD, the eleven standard headers (``content-length`` is "0" for a body-less
    non-GET/HEAD request), the sorted ``ocp-*`` headers as ``name:value``, then
    ``/{account}{path}`` and the sorted query parameters as ``\\nname:value``.
    """
    lower = {k.lower(): v for k, v in headers.items() if v}
    if method not in ("GET", "HEAD") and "content-length" not in lower:
        lower["content-length"] = "0"
    out = method + "\n" + "\n".join(lower.get(h, "") for h in HEADERS_TO_SIGN) + "\n"
    ocp = sorted((k, v) for k, v in lower.items() if "ocp-" in k)
    for name, value in ocp:
        out += f"{name}:{value}\n"
    out += f"/{account}{raw_path}"
    query = parse_qs(raw_query)
    for name in sorted(query):
        value = query[name][0]
        if value:
            out += f"\n{name}:{value}"
    return out


def sign(key: str, text: str) -> str:
    digest = hmac.new(base64.b64decode(key), text.encode("utf-8"), hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def _failed(reason: str, status: int = 403) -> BatchServiceError:
    # The service documents AuthenticationFailed as 403 Forbidden; a request without any
    # credentials is answered 401 Unauthorized.
    return BatchServiceError(
        status,
        "AuthenticationFailed",
        "Server failed to authenticate the request. Make sure the value of Authorization header "
        "is formed correctly including the signature.",
        {"AuthenticationErrorDetail": reason},
    )


def authenticate(
    *,
    account: str,
    key: str,
    allow_bearer: bool,
    method: str,
    raw_path: str,
    raw_query: str,
    headers: Mapping[str, str],
    check_bearer: Callable[[str], None] | None = None,
    shared_key: bool = True,
) -> str:
    """Check the Authorization header; return the scheme used ("SharedKey" or "Bearer").

    ``check_bearer`` validates and authorizes a bearer token (raising
    :class:`BatchServiceError`); without it any non-empty token is accepted.
    ``shared_key=False``: the account accepts Microsoft Entra ID only (its
    ``allowedAuthenticationModes`` lack ``SharedKey``)."""
    auth = ""
    for name, value in headers.items():
        if name.lower() == "authorization":
            auth = value
    if not auth:
        raise _failed("The Authorization header was not provided.", 401)
    scheme, _, rest = auth.partition(" ")
    if scheme == "Bearer":
        if not allow_bearer:
            raise _failed("Bearer tokens are only accepted over https.")
        if not rest.strip():
            raise _failed("The bearer token is empty.")
        if check_bearer is not None:
            check_bearer(rest.strip())
        return "Bearer"
    if scheme != "SharedKey":
        raise _failed(f"Unsupported authorization scheme '{scheme}'.")
    if not shared_key:
        raise _failed("Shared Key authentication is disabled for this account; use Microsoft Entra ID.", 401)
    name, _, signature = rest.rpartition(":")
    if name != account:
        raise _failed(f"The account '{name}' in the Authorization header does not match this account.")
    expected = sign(key, string_to_sign(account, method, raw_path, raw_query, headers))
    if not hmac.compare_digest(expected, signature.strip()):
        raise _failed(
            "The MAC signature found in the HTTP request is not the same as any computed signature."
        )
    return "SharedKey"


def entra_check(roles: Callable[[str], bool]) -> Callable[[str], None]:
    """A ``check_bearer`` for Microsoft Entra ID: the token must be a valid token for the
    Batch data plane (401 ``AuthenticationFailed`` otherwise) and its principal must hold a
    Batch data role (``roles(oid)``), else 403 ``AuthorizationFailure``, which is what the
    service answers a principal without one (its message: "This request is not authorized
    to perform this operation.", as in Azure/BatchExplorer issue #2203)."""
    from batch_transcode.testing._entra import BATCH_AUDIENCE, TokenRejected, check_token

    def check(token: str) -> None:
        try:
            claims = check_token(token, [BATCH_AUDIENCE])
        except TokenRejected as exc:
            raise _failed(str(exc), 401) from None
        if not roles(str(claims["oid"])):
            raise BatchServiceError(
                403,
                "AuthorizationFailure",
                "This request is not authorized to perform this operation.",
            )

    return check
