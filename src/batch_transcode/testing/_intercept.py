"""Intercept mode: an HTTPS proxy on loopback that answers for the public Azure host names.

A program written for the public cloud builds ``https://{account}.blob.core.windows.net/``
and ``https://{account}.{region}.batch.azure.com`` itself. With ``HTTPS_PROXY`` pointing
here, its HTTP client (``requests`` under azure-core) asks this proxy to ``CONNECT`` to
those names; the proxy answers only for the names it was given (:meth:`InterceptProxy.route`),
terminates TLS with a certificate for the name issued by the offline Azure's throwaway CA
(which the program trusts through ``REQUESTS_CA_BUNDLE``), and relays each request to the
loopback service behind the name: Azurite (or the storage front door) and the Batch
emulator. Every other host, and every plain-HTTP proxy request, is refused with
``403``: nothing leaves the machine.

Requests are relayed unchanged, ``Host`` header included: Azurite reads the account from
a production-style host name ("Production-style URL" in Azurite's README), and Shared Key
and SAS signatures cover the account and path, not the host. Batch answers carry the
emulator's own URL (``odata.metadata``, ``url``, ``odata.nextLink``, ``Location``): the
proxy writes the public one in its place, as the service answers with its own name.
"""

from __future__ import annotations

import http.client
import io
import logging
import socket
import ssl
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import quote, urlsplit

from batch_transcode._redact import redact

from ._serving import LoopbackServer, QuietServer, read_body

if TYPE_CHECKING:
    import trustme

__all__ = ["InterceptProxy"]

log = logging.getLogger(__name__)

_HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-connection", "proxy-authorization", "te", "trailer", "upgrade"}
)
_CHUNK = 256 * 1024


@dataclass(frozen=True)
class _Route:
    """Where a public host name leads: a loopback base URL (``http(s)://127.0.0.1:PORT``);
    with ``rewrite``, answers have that base URL replaced by the public one."""

    public: str
    target: str
    rewrite: bool

    def connect(self, ca_bundle: str | None) -> http.client.HTTPConnection:
        parts = urlsplit(self.target)
        host, port = parts.hostname or "127.0.0.1", parts.port
        if parts.scheme == "https":
            context = ssl.create_default_context(cafile=ca_bundle)
            return http.client.HTTPSConnection(host, port, timeout=120, context=context)
        return http.client.HTTPConnection(host, port, timeout=120)

    def fix(self, data: bytes) -> bytes:
        """``data`` with the loopback base URL replaced by the public one (plain and
        percent-encoded, as in ``ocp-batch-file-url``)."""
        if not self.rewrite:
            return data
        for old, new in (
            (self.target, self.public),
            (quote(self.target, safe=""), quote(self.public, safe="")),
        ):
            data = data.replace(old.encode(), new.encode())
        return data


class _Writer(io.BufferedIOBase):
    """A handler's ``wfile`` on the TLS socket: every write sent whole."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self._sock.sendall(data)
        return len(data)


class _Server(QuietServer):
    proxy: InterceptProxy


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server
    _route: _Route | None = None

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("intercept proxy: %s", redact(format % args))

    def _refuse(self, what: str) -> None:
        proxy = self.server.proxy
        proxy._count_refusal()
        message = (
            f"batch_transcode offline Azure: {what} is not intercepted; only "
            f"{', '.join(sorted(proxy.hosts))} are served here and nothing else leaves this machine.\n"
        ).encode()
        self.send_response(403, "Forbidden")
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(message)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(message)
        self.close_connection = True

    def do_CONNECT(self) -> None:
        host, _, port = self.path.rpartition(":")
        route = self.server.proxy._routes.get(host.lower()) if port == "443" else None
        if route is None or self._route is not None:
            self._refuse(self.path)
            return
        self.send_response_only(200, "Connection established")
        self.end_headers()
        tls = self.server.proxy._context(host.lower()).wrap_socket(self.connection, server_side=True)
        self.connection = tls
        self.rfile = cast(io.BufferedIOBase, tls.makefile("rb"))
        self.wfile = _Writer(tls)
        self._route = route
        self.close_connection = False

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            if isinstance(self.connection, ssl.SSLSocket):
                self.connection.close()

    def _relay(self) -> None:
        route = self._route
        if route is None:  # a plain-HTTP proxy request ("GET http://host/..."), never relayed
            self._refuse(urlsplit(self.path).hostname or self.path)
            return
        body = self._read_body()
        upstream = route.connect(self.server.proxy.ca_bundle)
        response: http.client.HTTPResponse | None = None
        try:
            upstream.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
            for name, value in self.headers.items():
                if name.lower() not in _HOP_BY_HOP and name.lower() != "transfer-encoding":
                    upstream.putheader(name, value)
            if body is not None and "content-length" not in {k.lower() for k in self.headers}:
                upstream.putheader("Content-Length", str(len(body)))
            upstream.endheaders(body or None)
            response = upstream.getresponse()
            self._answer(route, response)
        finally:
            if response is not None:
                response.close()
            upstream.close()

    def _answer(self, route: _Route, response: http.client.HTTPResponse) -> None:
        bodyless = self.command == "HEAD" or response.status in (204, 304)
        length = response.getheader("Content-Length")
        data: bytes | None = None
        if route.rewrite and not bodyless:
            data = route.fix(response.read())
            length = str(len(data))
        self.send_response_only(response.status, response.reason)
        for name, value in response.getheaders():
            if name.lower() not in _HOP_BY_HOP and name.lower() not in (
                "transfer-encoding",
                "content-length",
            ):
                self.send_header(name, route.fix(value.encode("latin-1")).decode("latin-1"))
        chunked = length is None and not bodyless
        if length is not None:
            self.send_header("Content-Length", length)
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        if data is not None:
            self.wfile.write(data)
        elif not bodyless:
            self._stream(response, chunked)
        if response.will_close:
            self.close_connection = True

    def _stream(self, response: http.client.HTTPResponse, chunked: bool) -> None:
        while block := response.read(_CHUNK):
            self.wfile.write(b"%x\r\n%s\r\n" % (len(block), block) if chunked else block)
        if chunked:
            self.wfile.write(b"0\r\n\r\n")

    def _read_body(self) -> bytes | None:
        return read_body(
            self.rfile, self.headers.get("Content-Length"), self.headers.get("Transfer-Encoding", "")
        )

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = do_OPTIONS = do_PATCH = _relay


class InterceptProxy(LoopbackServer):
    """``InterceptProxy(ca, ca_bundle=None)``: the HTTPS proxy of intercept mode on a free
    loopback port (:attr:`url`). ``ca`` is the ``trustme.CA`` that signs a certificate for
    each routed name; ``ca_bundle`` the CA file to trust when a loopback service serves
    https. :meth:`route` adds a name; :attr:`refused` counts what was turned away."""

    def __init__(self, ca: trustme.CA, *, ca_bundle: str | None = None) -> None:
        super().__init__()
        self._ca = ca
        self.ca_bundle = ca_bundle
        self._routes: dict[str, _Route] = {}
        self._contexts: dict[str, ssl.SSLContext] = {}
        self._lock = threading.Lock()
        self.refused = 0

    def __repr__(self) -> str:
        return f"<InterceptProxy {self.url if self._server else 'stopped'} hosts={sorted(self.hosts)}>"

    @property
    def hosts(self) -> frozenset[str]:
        """The host names it answers for."""
        return frozenset(self._routes)

    def route(self, host: str, target: str, *, rewrite: bool = False) -> str:
        """Answer for ``https://{host}`` by relaying to ``target`` (a loopback base URL);
        ``rewrite``: put the public URL in place of ``target`` in answers. Returns the
        public base URL."""
        public = f"https://{host.lower()}"
        with self._lock:
            self._routes[host.lower()] = _Route(public, target.rstrip("/"), rewrite)
        return public

    def _context(self, host: str) -> ssl.SSLContext:
        with self._lock:
            context = self._contexts.get(host)
            if context is None:
                context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
                self._ca.issue_cert(host).configure_cert(context)
                self._contexts[host] = context
            return context

    def _count_refusal(self) -> None:
        with self._lock:
            self.refused += 1

    @property
    def url(self) -> str:
        """The proxy's URL, for ``HTTPS_PROXY``."""
        return f"http://127.0.0.1:{self.port}"

    def _bind(self) -> _Server:
        server = _Server(("127.0.0.1", 0), _Handler)
        server.proxy = self
        return server
