"""A small threaded HTTP(S) server base for the CRM emulators.

Subclasses implement :meth:`EmulatorServer.handle`; the base gives them a loopback server on
an ephemeral port (optionally TLS), a request log with counters, one-shot fault injection and
a settable clock.
"""

from __future__ import annotations

import datetime as dt
import json
import socket
import ssl
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

from tests.emulators.tls import TlsFiles


@dataclass(frozen=True)
class Request:
    """One received request; ``query`` maps each parameter to its last value."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes

    def header(self, name: str) -> str | None:
        """Header value by case-insensitive name."""
        return self.headers.get(name.lower())

    def json(self) -> Any:
        """The body decoded as JSON (``ValueError`` when it is not)."""
        return json.loads(self.body or b"null")


@dataclass
class Response:
    """What a handler answers."""

    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


def json_response(status: int, payload: Any, headers: dict[str, str] | None = None) -> Response:
    """A JSON response."""
    body = json.dumps(payload).encode()
    content_type = {"Content-Type": "application/json;charset=UTF-8"}
    return Response(status, body, {**content_type, **(headers or {})})


@dataclass
class Fault:
    """A canned response served instead of the real one for the next ``times`` matching calls."""

    response: Response
    path_contains: str
    times: int


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    tls_context: ssl.SSLContext | None = None

    def finish_request(self, request: socket.socket, client_address: Any) -> None:  # type: ignore[override]
        """Run the TLS handshake in the worker thread, not in the accept loop."""
        if self.tls_context is None:
            super().finish_request(request, client_address)
            return
        try:
            tls_sock = self.tls_context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            return
        try:
            self.RequestHandlerClass(tls_sock, client_address, self)
        finally:
            tls_sock.close()


class EmulatorServer:
    """Base class: start/stop, request log, fault injection, clock."""

    def __init__(self, tls: TlsFiles | None = None) -> None:
        self._tls = tls
        self._lock = threading.RLock()
        self._faults: list[Fault] = []
        self._clock: dt.datetime | None = None
        self.requests: list[Request] = []
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # lifecycle -------------------------------------------------------------------------
    def start(self) -> Self:
        """Bind 127.0.0.1 on an ephemeral port and serve in a daemon thread."""
        server = _Server(("127.0.0.1", 0), _make_handler(self))
        if self._tls is not None:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(self._tls.server_cert, self._tls.server_key)
            server.tls_context = ctx
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._server is not None, "emulator not started"
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        """``http(s)://127.0.0.1:PORT`` (no trailing slash)."""
        scheme = "https" if self._tls else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    # clock -----------------------------------------------------------------------------
    def now(self) -> dt.datetime:
        """The emulator clock: the time set with :meth:`set_clock`, else the real UTC time."""
        with self._lock:
            return self._clock or dt.datetime.now(dt.UTC)

    def set_clock(self, when: dt.datetime | None) -> None:
        """Freeze the clock at ``when`` (aware); ``None`` returns to real time."""
        with self._lock:
            self._clock = when

    def advance(self, **delta: float) -> dt.datetime:
        """Move a frozen clock forward by ``timedelta(**delta)``; returns the new time."""
        with self._lock:
            self._clock = self.now() + dt.timedelta(**delta)
            return self._clock

    # faults and counters -----------------------------------------------------------------
    def inject_fault(
        self,
        status: int,
        payload: Any = None,
        *,
        headers: dict[str, str] | None = None,
        path_contains: str = "",
        times: int = 1,
    ) -> None:
        """Answer the next ``times`` requests whose path contains ``path_contains`` with
        ``status`` and a JSON ``payload`` (or an empty body)."""
        if payload is None:
            response = Response(status, b"", dict(headers or {}))
        else:
            response = json_response(status, payload, headers)
        with self._lock:
            self._faults.append(Fault(response, path_contains, times))

    def count(self, method: str | None = None, path_contains: str = "") -> int:
        """How many requests were received, optionally filtered by method and path."""
        with self._lock:
            return sum(
                1
                for r in self.requests
                if (method is None or r.method == method) and path_contains in r.path
            )

    def reset_counters(self) -> None:
        """Forget the request log."""
        with self._lock:
            self.requests.clear()

    def _take_fault(self, path: str) -> Response | None:
        with self._lock:
            for fault in self._faults:
                if fault.path_contains in path:
                    fault.times -= 1
                    if fault.times <= 0:
                        self._faults.remove(fault)
                    return fault.response
        return None

    def _dispatch(self, request: Request) -> Response:
        with self._lock:
            self.requests.append(request)
        return self._take_fault(request.path) or self.handle(request)

    def handle(self, request: Request) -> Response:
        """Answer one request; subclasses override."""
        raise NotImplementedError


def _make_handler(emulator: EmulatorServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Headers and body leave in one segment (buffered, flushed after each request), with
        # TCP_NODELAY: no Nagle/delayed-ACK stall of ~40 ms per keep-alive response.
        wbufsize = 1 << 16
        disable_nagle_algorithm = True

        def _serve(self) -> None:
            parts = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
            headers = {k.lower(): v for k, v in self.headers.items()}
            request = Request(self.command, parts.path, query, headers, body)
            try:
                response = emulator._dispatch(request)
            except Exception as exc:  # an emulator bug must surface as a 500, not a hang
                response = json_response(500, {"error": f"emulator error: {exc!r}"})
            self.send_response(response.status)
            for name, value in response.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(response.body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(response.body)

        do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = do_HEAD = _serve

        def log_message(self, format: str, *args: Any) -> None:
            """Keep test output quiet."""

    return Handler

