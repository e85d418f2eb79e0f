"""Microsoft Entra ID offline: test access tokens, the credential that hands them out, and
the role assignments the offline services enforce.

The tokens are unsigned JWTs carrying the claims Azurite's ``--oauth basic`` mode checks
(``BlobTokenAuthenticator.authenticateBasic`` in the Azurite repository: ``iat``, ``nbf``
and ``exp`` present and the time within them, an ``iss`` starting with
``https://sts.windows.net/``, an ``aud`` of the storage service; the signature is not
checked). The Batch emulator checks the same claims with the Batch audience
(``https://batch.core.windows.net/``, the resource of the Batch data plane:
https://learn.microsoft.com/azure/batch/batch-aad-auth). Nothing here is a secret: a token
is only good for the offline services of one :class:`OfflineAzure`.

Role assignments (:class:`RoleAssignments`) stand in for Azure RBAC: which principal (the
token's ``oid``) holds which data-plane role. Azurite itself grants every valid token
everything; the offline storage front door refuses a principal without a storage data
role with the service's ``403 AuthorizationPermissionMismatch``, the Batch emulator one
without a Batch data role with ``403 AuthorizationFailure``.
"""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from azure.core.credentials import AccessToken

__all__ = [
    "BATCH_AUDIENCE",
    "BATCH_DATA_ROLES",
    "STORAGE_AUDIENCE",
    "STORAGE_DATA_ROLES",
    "OfflineCredential",
    "RoleAssignments",
    "TokenRejected",
    "check_token",
    "make_token",
]

#: The audience of tokens for Azure Storage and for the Batch data plane (the scope the
#: SDKs ask for is the audience plus ``.default``).
STORAGE_AUDIENCE = "https://storage.azure.com"
BATCH_AUDIENCE = "https://batch.core.windows.net/"
#: Issuer prefix of Microsoft Entra ID v1 tokens (one of those Azurite accepts).
ISSUER_PREFIX = "https://sts.windows.net/"
#: Built-in roles that grant the data actions the library needs
#: (https://learn.microsoft.com/azure/role-based-access-control/built-in-roles).
STORAGE_DATA_ROLES = frozenset({"Storage Blob Data Contributor", "Storage Blob Data Owner"})
BATCH_DATA_ROLES = frozenset({"Azure Batch Data Contributor"})
#: The default test tenant and principal of :class:`OfflineCredential`.
TENANT_ID = "72f988bf-0000-4000-8000-0000000000aa"
PRINCIPAL_ID = "5e1f0000-0000-4000-8000-00000000b7c0"
_LIFETIME = 3600


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def make_token(
    audience: str, *, oid: str, tenant: str = TENANT_ID, lifetime: int = _LIFETIME, now: float | None = None
) -> tuple[str, int]:
    """An unsigned JWT for ``audience`` and principal ``oid``; (token, expiry epoch seconds)."""
    issued = int(time.time() if now is None else now)
    expires = issued + lifetime
    claims: dict[str, object] = {
        "aud": audience,
        "iss": f"{ISSUER_PREFIX}{tenant}/",
        "iat": issued,
        "nbf": issued - 60,
        "exp": expires,
        "oid": oid,
        "sub": oid,
        "tid": tenant,
        "ver": "1.0",
    }
    header = {"alg": "none", "typ": "JWT"}
    token = ".".join(
        (_b64(json.dumps(header).encode()), _b64(json.dumps(claims, separators=(",", ":")).encode()), "")
    )
    return token, expires


class TokenRejected(Exception):
    """A bearer token the offline services do not accept; ``str()`` says why."""


def check_token(token: str, audiences: Iterable[str], *, now: float | None = None) -> Mapping[str, Any]:
    """The claims of ``token`` if it is a JWT for one of ``audiences``, issued by Microsoft
    Entra ID and valid now; else :class:`TokenRejected`."""
    parts = token.split(".")
    if len(parts) != 3:
        raise TokenRejected("The access token is not a JWT.")
    try:
        claims = json.loads(_unb64(parts[1]))
    except ValueError as exc:
        raise TokenRejected("The access token is not a JWT.") from exc
    if not isinstance(claims, dict):
        raise TokenRejected("The access token is not a JWT.")
    stamp = time.time() if now is None else now
    try:
        nbf, exp = float(claims["nbf"]), float(claims["exp"])
    except (KeyError, TypeError, ValueError) as exc:
        raise TokenRejected("The access token has no lifetime (nbf, exp).") from exc
    if stamp < nbf or stamp > exp:
        raise TokenRejected("Lifetime validation failed. The token is expired or not yet valid.")
    if not str(claims.get("iss", "")).startswith(ISSUER_PREFIX):
        raise TokenRejected("Invalid token issuer.")
    wanted = {a.rstrip("/") for a in audiences}
    if str(claims.get("aud", "")).rstrip("/") not in wanted:
        raise TokenRejected("Invalid token audience.")
    if not claims.get("oid"):
        raise TokenRejected("The access token names no principal (oid).")
    return claims


class RoleAssignments:
    """Data-plane roles per principal (``oid``), changeable while the services run. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._roles: dict[str, set[str]] = {}

    def grant(self, principal: str, *roles: str) -> None:
        with self._lock:
            self._roles.setdefault(principal, set()).update(roles)

    def revoke(self, principal: str, *roles: str) -> None:
        """Take ``roles`` away from ``principal`` (all of its roles when none are named)."""
        with self._lock:
            held = self._roles.get(principal, set())
            if roles:
                held.difference_update(roles)
            else:
                held.clear()

    def roles(self, principal: str) -> frozenset[str]:
        with self._lock:
            return frozenset(self._roles.get(principal, ()))

    def holds_any(self, principal: str, roles: Iterable[str]) -> bool:
        return not self.roles(principal).isdisjoint(roles)


class OfflineCredential:
    """A ``TokenCredential`` for the offline services: the token of one principal for the
    scope asked (storage or Batch). ``principal_id`` is its ``oid``; ``scopes`` records
    every scope asked for."""

    def __init__(self, principal_id: str | None = None, *, tenant_id: str = TENANT_ID) -> None:
        self.principal_id = principal_id or str(uuid.uuid4())
        self.tenant_id = tenant_id
        self.scopes: list[str] = []
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<OfflineCredential principal={self.principal_id}>"

    def get_token(
        self,
        *scopes: str,
        claims: str | None = None,
        tenant_id: str | None = None,
        enable_cae: bool = False,
        **kwargs: Any,
    ) -> AccessToken:
        if not scopes:
            raise ValueError("get_token needs a scope")
        with self._lock:
            self.scopes.extend(scopes)
        scope = scopes[0]
        audience = scope[: -len("/.default")] if scope.endswith("/.default") else scope
        if audience.rstrip("/") == BATCH_AUDIENCE.rstrip("/"):
            audience = BATCH_AUDIENCE
        token, expires_on = make_token(audience, oid=self.principal_id, tenant=tenant_id or self.tenant_id)
        return AccessToken(token, expires_on)

    def close(self) -> None:
        """Nothing to release (``TokenCredential`` protocol)."""
