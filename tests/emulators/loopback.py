"""The server core every HTTP emulator shares: a threaded stdlib server on 127.0.0.1.

:class:`LoopbackServer` binds an ephemeral port (optionally TLS, the handshake done in the
worker thread), answers each request with one buffered write and TCP_NODELAY, keeps a queue
of one-shot faults, and starts/stops as a context manager. Subclasses implement
:meth:`LoopbackServer.respond`; the request-level conveniences live in ``http_base`` and
``crm_http``.
"""

from __future__ import annotations

import json
import socket
import ssl
import struct
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

from tests.emulators.tls import TlsFiles

ALL_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD")
RESET = 0  # a Response with this status is no answer: the connection is reset (TCP RST)


@dataclass
class Response:
    """What the emulator answers."""

    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, status: int, payload: Any, headers: Mapping[str, str] | None = None) -> Response:
        """A JSON response."""
        return cls(
            status,
            json.dumps(payload).encode(),
            {"Content-Type": "application/json; charset=UTF-8", **(headers or {})},
        )


@dataclass
class Fault:
    """A canned response served instead of the real one for the next ``times`` matching calls."""

    response: Response
    path_contains: str
    times: int


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    tls_context: ssl.SSLContext | None = None

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went away mid-request (a killed process) is not an emulator error."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)

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


class LoopbackServer:
    """Start/stop, port, fault queue; subclasses answer requests in :meth:`respond`."""

    methods: tuple[str, ...] = ALL_METHODS

    def __init__(self, *, tls: TlsFiles | None = None) -> None:
        self._tls = tls
        self._lock = threading.RLock()
        self._faults: list[Fault] = []
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> Self:
        """Bind an ephemeral port on 127.0.0.1 and serve in a daemon thread."""
        server = _Server(("127.0.0.1", 0), _handler_for(self))
        if self._tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(self._tls.server_cert, self._tls.server_key)
            server.tls_context = context
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, release the port and join the serving thread."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The bound port (``RuntimeError`` before :meth:`start`)."""
        if self._server is None:
            raise RuntimeError(f"{type(self).__name__} is not started")
        return int(self._server.server_address[1])

    @property
    def _origin(self) -> str:
        scheme = "https" if self._tls is not None else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    # -- fault queue ---------------------------------------------------------------------

    def _add_fault(self, response: Response, times: int = 1, path_contains: str = "") -> None:
        with self._lock:
            self._faults.append(Fault(response, path_contains, times))

    def _take_fault(self, path: str) -> Response | None:
        """The first queued fault matching ``path``, used up one call at a time."""
        with self._lock:
            for fault in self._faults:
                if fault.path_contains in path:
                    fault.times -= 1
                    if fault.times <= 0:
                        self._faults.remove(fault)
                    return fault.response
        return None

    # -- subclass API --------------------------------------------------------------------

    def respond(self, method: str, target: str, headers: dict[str, str], body: bytes) -> Response:
        """Answer one request: ``target`` is the raw path with query, header keys lower-case."""
        raise NotImplementedError


def _handler_for(emulator: LoopbackServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Headers and body leave in one segment (buffered, flushed after each request), with
        # TCP_NODELAY: no Nagle/delayed-ACK stall of ~40 ms per keep-alive response.
        wbufsize = 1 << 16
        disable_nagle_algorithm = True

        def _serve(self) -> None:
            headers = {key.lower(): value for key, value in self.headers.items()}
            response = emulator.respond(self.command, self.path, headers, self._read_body())
            if response.status == RESET:  # abortive close: the client gets a reset
                linger = struct.pack("ii", 1, 0)
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
                self.close_connection = True
                return
            self.send_response(response.status)
            for name, value in response.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(response.body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(response.body)

        def _read_body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                chunks = []
                while size := int(self.rfile.readline().split(b";")[0], 16):
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return b"".join(chunks)
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def log_message(self, format: str, *args: Any) -> None:
            """Keep test output quiet."""

    for method in emulator.methods:
        setattr(Handler, f"do_{method}", Handler._serve)
    return Handler
