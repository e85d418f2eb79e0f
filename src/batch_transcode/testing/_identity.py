"""A managed-identity endpoint on loopback, so that another process's
``DefaultAzureCredential()`` gets tokens for the offline services.

It speaks the App Service managed-identity protocol that azure-identity's
``ManagedIdentityCredential`` (hence ``DefaultAzureCredential``) uses when the environment
has ``IDENTITY_ENDPOINT`` and ``IDENTITY_HEADER`` ("How to use managed identities for App
Service and Azure Functions", REST endpoint reference,
https://learn.microsoft.com/azure/app-service/overview-managed-identity#rest-endpoint-reference):
``GET {IDENTITY_ENDPOINT}?resource=...&api-version=2019-08-01`` with the header
``X-IDENTITY-HEADER: {IDENTITY_HEADER}``, answered with ``access_token``, ``expires_on``
(epoch seconds), ``resource`` and ``token_type``. The header is a fresh random secret per
endpoint: another local user who finds the port gets nothing without it. The tokens are
those of one :class:`~._entra.OfflineCredential` principal, so the roles an
``OfflineAzure`` holds for it (``.roles``) decide what the other process may do.
"""

from __future__ import annotations

import hmac
import json
import logging
import secrets
import threading
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

from ._entra import OfflineCredential
from ._serving import LoopbackServer, QuietServer

__all__ = ["IdentityEndpoint"]

log = logging.getLogger(__name__)

#: The api-version of the App Service protocol that azure-identity sends.
API_VERSION = "2019-08-01"


class _Server(QuietServer):
    endpoint: IdentityEndpoint


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("identity endpoint: %s", format % args)

    def _answer(self, status: int, doc: dict[str, Any]) -> None:
        payload = json.dumps(doc).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def do_GET(self) -> None:
        endpoint = self.server.endpoint
        query = parse_qs(urlsplit(self.path).query)
        secret = self.headers.get("X-IDENTITY-HEADER", "")
        if not hmac.compare_digest(secret.encode(), endpoint.header.encode()):
            endpoint._count(refused=True)
            self._answer(
                401, {"error": {"code": "Unauthorized", "message": "X-IDENTITY-HEADER is missing or wrong."}}
            )
            return
        resource = (query.get("resource") or [""])[0]
        if not resource:
            self._answer(
                400, {"error": {"code": "BadRequest", "message": "The resource parameter is required."}}
            )
            return
        token = endpoint.credential.get_token(resource)
        endpoint._count(refused=False)
        self._answer(
            200,
            {
                "access_token": token.token,
                "expires_on": str(token.expires_on),
                "resource": resource,
                "token_type": "Bearer",
                "client_id": endpoint.client_id,
            },
        )


class IdentityEndpoint(LoopbackServer):
    """``IdentityEndpoint(credential)``: the App Service managed-identity endpoint on a free
    loopback port, handing out ``credential``'s tokens. :attr:`env` gives the two variables
    a process needs; :attr:`issued` and :attr:`refused` count the requests."""

    def __init__(self, credential: OfflineCredential) -> None:
        super().__init__()
        self.credential = credential
        #: The secret callers must send back in ``X-IDENTITY-HEADER`` (fresh per endpoint).
        self.header = secrets.token_urlsafe(32)
        self.client_id = credential.principal_id
        self.issued = 0
        self.refused = 0
        self._lock = threading.Lock()

    def __repr__(self) -> str:  # the header is a secret: not here
        return f"<IdentityEndpoint {self.url if self._server else 'stopped'}>"

    def _count(self, *, refused: bool) -> None:
        with self._lock:
            if refused:
                self.refused += 1
            else:
                self.issued += 1

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/msi/token"

    @property
    def env(self) -> dict[str, str]:
        """``IDENTITY_ENDPOINT`` and ``IDENTITY_HEADER``, as App Service sets them."""
        return {"IDENTITY_ENDPOINT": self.url, "IDENTITY_HEADER": self.header}

    def _bind(self) -> _Server:
        server = _Server(("127.0.0.1", 0), _Handler)
        server.endpoint = self
        return server
