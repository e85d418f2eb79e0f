"""A loopback reverse proxy in front of Azurite that adds latency and injects storage faults.

Requests are forwarded byte for byte (method, path, query, every header, the body
streamed by ``Content-Length`` or chunked framing). Shared Key and SAS signatures
cover the canonicalized resource (``/account/container/blob``) and the headers, not
the host and port, so signed requests stay valid through the proxy.

A bandwidth cap models the client's own link to the storage account (an office or home
uplink, say): request bodies share one ``bandwidth`` bytes per second upstream and
response bodies another downstream, as on a full-duplex link. Requests from emulated
Batch nodes (User-Agent :data:`NODE_USER_AGENT`) are not capped: nodes sit in the
service's region, next to the storage account, not behind the client's link.

With ``tls`` the proxy serves https and reaches the target over https (trusting
``ca_bundle``); with ``roles`` it plays an account with Shared Key access disallowed and
does the role check Azurite lacks: a request signed with the account key (Shared Key, or a
SAS other than a user-delegation SAS) is refused with ``403 KeyBasedAuthenticationNotPermitted``
("Prevent Shared Key authorization",
https://learn.microsoft.com/azure/storage/common/shared-key-authorization-prevent), and a
bearer token of a principal holding no storage data role with the service's
``403 AuthorizationPermissionMismatch`` ("Authorize access to blobs using Microsoft Entra
ID", https://learn.microsoft.com/azure/storage/blobs/authorize-access-azure-active-directory;
the code is in "Blob Storage error codes",
https://learn.microsoft.com/rest/api/storageservices/blob-service-error-codes).

Failed authentication is answered as the service answers it: Azurite refuses a SAS whose
signature does not match, that has expired or is not yet valid, and a Shared Key request
with a wrong signature with ``403 AuthorizationFailure``; the service answers those with
``403 AuthenticationFailed`` ("Common REST API error codes",
https://learn.microsoft.com/rest/api/storageservices/common-rest-api-error-codes) and an
``AuthenticationErrorDetail`` saying which check failed ("Signature not valid in the
specified time frame: Start [...] - Expiry [...] - Current [...]", "Signature did not
match", as the service's answers quoted in microsoft/AzureStorageExplorer issues 3219 and
6198 read). The proxy rewrites those answers so; a SAS without a permission the request
needs stays ``403 AuthorizationPermissionMismatch``, which both answer.
"""

from __future__ import annotations

import datetime as dt
import http.client
import logging
import random
import ssl
import threading
import time
from collections.abc import Iterable
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import parse_qs, urlsplit
from xml.sax.saxutils import escape

from batch_transcode._redact import redact

from ._serving import LoopbackServer, QuietServer, drop_connection, read_body

if TYPE_CHECKING:
    from ._entra import RoleAssignments

__all__ = ["NODE_USER_AGENT", "StorageProxy", "authentication_detail"]

log = logging.getLogger(__name__)

_CHUNK = 256 * 1024
#: Piece of a capped transfer: small enough that concurrent transfers share the link evenly.
_LINK_CHUNK = 32 * 1024
#: What emulated nodes put in their User-Agent (see the module docstring).
NODE_USER_AGENT = "batch-transcode-emulated-node"
_HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-connection", "te", "trailer", "upgrade"})

_SERVER_BUSY = (
    b'<?xml version="1.0" encoding="utf-8"?><Error><Code>ServerBusy</Code>'
    b"<Message>The server is currently unable to receive requests. Please retry your request. "
    b"(injected by batch_transcode.testing.StorageProxy)</Message></Error>"
)
_KEY_NOT_PERMITTED = (
    b'<?xml version="1.0" encoding="utf-8"?><Error><Code>KeyBasedAuthenticationNotPermitted</Code>'
    b"<Message>Key based authentication is not permitted on this storage account.</Message></Error>"
)
_PERMISSION_MISMATCH = (
    b'<?xml version="1.0" encoding="utf-8"?><Error><Code>AuthorizationPermissionMismatch</Code>'
    b"<Message>This request is not authorized to perform this operation using this permission."
    b"</Message></Error>"
)

#: Answers of the Entra ID checks: decision -> (code, message, body).
_REFUSALS = {
    "forbidden": (
        "AuthorizationPermissionMismatch",
        "This request is not authorized to perform this operation using this permission.",
        _PERMISSION_MISMATCH,
    ),
    "key": (
        "KeyBasedAuthenticationNotPermitted",
        "Key based authentication is not permitted on this storage account.",
        _KEY_NOT_PERMITTED,
    ),
}


_AUTHENTICATION_FAILED = (
    "Server failed to authenticate the request. "
    "Make sure the value of Authorization header is formed correctly including the signature."
)


def _stamp(value: dt.datetime) -> str:
    return format_datetime(value.astimezone(dt.UTC), usegmt=True)


def _sas_time(query: dict[str, list[str]], name: str) -> dt.datetime | None:
    raw = (query.get(name) or [""])[0]
    try:
        parsed = dt.datetime.fromisoformat(raw.replace("Z", "+00:00")) if raw else None
    except ValueError:
        return None
    return parsed.replace(tzinfo=parsed.tzinfo or dt.UTC) if parsed else None


def authentication_detail(target: str, authorization: str, now: dt.datetime | None = None) -> str | None:
    """The service's ``AuthenticationErrorDetail`` for a request to ``target`` that Azurite
    refused with ``AuthorizationFailure``: which check of its SAS or Shared Key signature
    failed (None for other requests: bearer tokens keep Azurite's answer)."""
    if authorization.startswith("SharedKey"):
        return "The MAC signature found in the HTTP request is not the same as any computed signature."
    query = parse_qs(urlsplit(target).query)
    if "sig" not in query:
        return None
    current = now or dt.datetime.now(dt.UTC)
    start, expiry = _sas_time(query, "st"), _sas_time(query, "se")
    if start is not None and expiry is not None and expiry <= start:
        return f"Signed expiry time [{_stamp(expiry)}] must be after signed start time [{_stamp(start)}]"
    if (expiry is not None and expiry < current) or (start is not None and start > current):
        shown = _stamp(start) if start is not None else ""
        return (
            f"Signature not valid in the specified time frame: Start [{shown}] - "
            f"Expiry [{_stamp(expiry) if expiry else ''}] - Current [{_stamp(current)}]"
        )
    return "Signature did not match."


def _authentication_failed(detail: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="utf-8"?><Error><Code>AuthenticationFailed</Code>'
        f"<Message>{_AUTHENTICATION_FAILED}</Message>"
        f"<AuthenticationErrorDetail>{escape(detail)}</AuthenticationErrorDetail></Error>"
    ).encode()


class Clock(Protocol):
    """Where the proxy reads the time and waits (the :mod:`time` module; a test may pass a
    clock that only counts the waits)."""

    def monotonic(self) -> float: ...

    def sleep(self, seconds: float, /) -> None: ...


class _Link:
    """One direction of a link: ``rate`` bytes per second (``None``: unlimited) shared, first
    come first served, by every transfer through it."""

    def __init__(self, rate: float | None, clock: Clock = time) -> None:
        self.rate = rate
        self._clock = clock
        self._lock = threading.Lock()
        self._free_at = 0.0
        #: Bytes that crossed the link so far.
        self.carried = 0

    def carry(self, size: int) -> None:
        """Return once ``size`` bytes have crossed the link."""
        rate = self.rate
        if not rate or size <= 0:
            return
        with self._lock:
            self.carried += size
            now = self._clock.monotonic()
            self._free_at = max(now, self._free_at) + size / rate
            done = self._free_at
        delay = done - self._clock.monotonic()
        if delay > 0:
            self._clock.sleep(delay)


class _Server(QuietServer):
    proxy: StorageProxy


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("proxy: %s", redact(format % args))

    def _forward(self) -> None:
        proxy = self.server.proxy
        decision = proxy._decide()
        if proxy.latency > 0:
            proxy.clock.sleep(proxy.latency)
        capped = NODE_USER_AGENT not in self.headers.get("User-Agent", "")
        up, down = (proxy._up, proxy._down) if capped else (_UNLIMITED, _UNLIMITED)
        body = self._read_body(up)
        if decision == "forward":
            decision = proxy._authorize(self.headers.get("Authorization", ""), self.path)
        if decision in _REFUSALS:
            code, message, payload = _REFUSALS[decision]
            self._send_error(403, message, code, payload, head=self.command == "HEAD")
            return
        if decision == "drop":
            drop_connection(self)
            return
        if decision == "busy":
            self._send_error(503, "Server Busy", "ServerBusy", _SERVER_BUSY)
            return
        upstream = proxy._connect()
        response: http.client.HTTPResponse | None = None
        try:
            upstream.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
            for name, value in self.headers.items():
                if name.lower() in _HOP_BY_HOP or name.lower() == "transfer-encoding":
                    continue
                upstream.putheader(name, value)
            if body is not None and "content-length" not in {k.lower() for k in self.headers}:
                upstream.putheader("Content-Length", str(len(body)))
            upstream.endheaders()
            if body:
                upstream.send(body)
            response = upstream.getresponse()
            if self._answered_as_the_service(response):
                return
            self.send_response_only(response.status, response.reason)
            length = response.getheader("Content-Length")
            for name, value in response.getheaders():
                if name.lower() in _HOP_BY_HOP or name.lower() == "transfer-encoding":
                    continue
                self.send_header(name, value)
            chunked = length is None and self.command != "HEAD" and response.status not in (204, 304)
            if chunked:
                self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            while True:
                block = response.read(_LINK_CHUNK if down.rate else _CHUNK)
                if not block:
                    break
                down.carry(len(block))
                if chunked:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(block), block))
                else:
                    self.wfile.write(block)
            if chunked:
                self.wfile.write(b"0\r\n\r\n")
            if response.will_close:
                self.close_connection = True
        finally:
            # the response holds the socket too: a client that hung up mid-answer must
            # not leave it open (http.client closes it only when the answer is read)
            if response is not None:
                response.close()
            upstream.close()

    def _answered_as_the_service(self, response: http.client.HTTPResponse) -> bool:
        """Answer Azurite's ``AuthorizationFailure`` for a failed SAS or Shared Key check as the
        service does (see the module docstring); True if this answered the request."""
        if response.status != 403 or response.getheader("x-ms-error-code") != "AuthorizationFailure":
            return False
        detail = authentication_detail(self.path, self.headers.get("Authorization", ""))
        if detail is None:
            return False
        response.read()
        payload = _authentication_failed(detail)
        self._send_error(
            403, _AUTHENTICATION_FAILED, "AuthenticationFailed", payload, head=self.command == "HEAD"
        )
        if response.will_close:
            self.close_connection = True
        return True

    def _send_error(self, status: int, reason: str, code: str, payload: bytes, *, head: bool = False) -> None:
        """A storage error answer: ``x-ms-error-code`` ``code`` and the XML ``payload`` (but
        its length alone with ``head``)."""
        self.send_response(status, reason)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("x-ms-error-code", code)
        self.end_headers()
        if not head:
            self.wfile.write(payload)

    def _read_body(self, link: _Link) -> bytes | None:
        return read_body(
            self.rfile,
            self.headers.get("Content-Length"),
            self.headers.get("Transfer-Encoding", ""),
            block=_LINK_CHUNK if link.rate else _CHUNK,
            carried=link.carry,
        )

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = do_OPTIONS = do_PATCH = _forward


_UNLIMITED = _Link(None)


def _check(latency: float, failure_rate: float, drop_share: float, bandwidth: float | None) -> None:
    if latency < 0 or not 0.0 <= failure_rate <= 1.0 or not 0.0 <= drop_share <= 1.0:
        raise ValueError("latency must be >= 0, failure_rate and drop_share in [0, 1]")
    if bandwidth is not None and bandwidth <= 0:
        raise ValueError("bandwidth must be > 0 bytes per second, or None for no cap")


class StorageProxy(LoopbackServer):
    """``StorageProxy(target_port, *, latency=0.0, failure_rate=0.0, seed=0, bandwidth=None)``.

    Every request waits ``latency`` seconds; request and response bodies of the client's
    requests cross a link of ``bandwidth`` bytes per second each way (``None``: no cap;
    see the module docstring); a ``failure_rate`` fraction of them
    fails without reaching the target: ``503 ServerBusy`` (a storage error body) or,
    for a ``drop_share`` of them (default one in five), a dropped connection. Decisions come from
    ``random.Random(seed)``. ``requests``, ``failures_injected`` (503s) and
    ``connections_dropped`` count what happened.

    ``tls`` (certificate, key), ``ca_bundle``, ``roles`` and ``storage_roles``: see the
    module notes (Microsoft Entra ID mode). ``clock`` is where latency and the cap read the
    time and wait (:class:`Clock`; the :mod:`time` module by default).
    """

    def __init__(
        self,
        target_port: int,
        *,
        latency: float = 0.0,
        failure_rate: float = 0.0,
        seed: int = 0,
        drop_share: float = 0.2,
        tls: tuple[str, str] | None = None,
        ca_bundle: str | None = None,
        roles: RoleAssignments | None = None,
        storage_roles: Iterable[str] = (),
        bandwidth: float | None = None,
        clock: Clock = time,
    ):
        _check(latency, failure_rate, drop_share, bandwidth)
        super().__init__()
        #: Where latency and the bandwidth cap read the time and wait.
        self.clock = clock
        self.target_port = target_port
        self.tls = tls
        self._ca_bundle = ca_bundle
        self._roles = roles
        self._storage_roles = frozenset(storage_roles)
        self.refused = 0
        self._up = _Link(bandwidth, clock)
        self._down = _Link(bandwidth, clock)
        self.latency = latency
        self.failure_rate = failure_rate
        self.drop_share = drop_share
        self._random = random.Random(seed)  # noqa: S311 - reproducible faults, not cryptography
        self._lock = threading.Lock()
        self.requests = 0
        self.failures_injected = 0
        self.connections_dropped = 0

    def __repr__(self) -> str:
        return (
            f"<StorageProxy :{self.port if self._server else '-'} -> :{self.target_port} "
            f"latency={self.latency} failure_rate={self.failure_rate} bandwidth={self.bandwidth}>"
        )

    @property
    def bandwidth(self) -> float | None:
        """Bytes per second each way of the client's link (``None``: no cap)."""
        return self._up.rate

    @property
    def link_bytes(self) -> tuple[int, int]:
        """Bytes sent up and down the capped client link since the cap was last set."""
        return self._up.carried, self._down.carried

    def set_faults(
        self,
        *,
        latency: float = 0.0,
        failure_rate: float = 0.0,
        seed: int = 0,
        drop_share: float = 0.2,
        bandwidth: float | None = None,
    ) -> None:
        """Switch latency, failures and the link's bandwidth now (a fresh random sequence
        from ``seed``)."""
        _check(latency, failure_rate, drop_share, bandwidth)
        with self._lock:
            self._up = _Link(bandwidth, self.clock)
            self._down = _Link(bandwidth, self.clock)
            self.latency = latency
            self.failure_rate = failure_rate
            self.drop_share = drop_share
            self._random = random.Random(seed)  # noqa: S311 - as above

    def _connect(self) -> http.client.HTTPConnection:
        if self.tls is None:
            return http.client.HTTPConnection("127.0.0.1", self.target_port, timeout=60)
        context = ssl.create_default_context(cafile=self._ca_bundle)
        return http.client.HTTPSConnection("127.0.0.1", self.target_port, timeout=60, context=context)

    def _authorize(self, authorization: str, target: str) -> str:
        """With ``roles`` (an account with Shared Key access disallowed): ``"key"`` for a
        request signed with the account key (Shared Key, or a SAS that is not a
        user-delegation SAS: no ``skoid``), ``"forbidden"`` for a valid storage bearer token
        whose principal holds no storage data role, else ``"forward"`` (invalid tokens go on
        to Azurite, which answers them itself)."""
        if self._roles is None:
            return "forward"
        decision = "forward"
        if authorization.startswith("SharedKey"):
            decision = "key"
        elif authorization.startswith("Bearer "):
            from ._entra import STORAGE_AUDIENCE, TokenRejected, check_token

            try:
                claims = check_token(authorization[len("Bearer ") :].strip(), [STORAGE_AUDIENCE])
            except TokenRejected:
                return "forward"
            if not self._roles.holds_any(str(claims["oid"]), self._storage_roles):
                decision = "forbidden"
        else:
            query = parse_qs(urlsplit(target).query)
            if "sig" in query and "skoid" not in query:
                decision = "key"
        if decision != "forward":
            with self._lock:
                self.refused += 1
        return decision

    def _decide(self) -> str:
        with self._lock:
            self.requests += 1
            if self.failure_rate <= 0 or self._random.random() >= self.failure_rate:
                return "forward"
            if self._random.random() < self.drop_share:
                self.connections_dropped += 1
                return "drop"
            self.failures_injected += 1
            return "busy"

    def _bind(self) -> _Server:
        server = _Server(("127.0.0.1", 0), _Handler)
        if self.tls is not None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(self.tls[0], self.tls[1])
            server.socket = context.wrap_socket(server.socket, server_side=True)
        server.proxy = self
        return server
