"""A reusable threaded HTTP emulator base: local port, JSON helpers, request log, faults, clock.

Subclass :class:`EmulatorServer`, implement :meth:`EmulatorServer.handle`, then::

    with MyEmulator() as emu:          # binds 127.0.0.1 on an ephemeral port
        client.base_url = emu.url      # "http://127.0.0.1:PORT" (https with ``tls=``)
        emu.fail_next(2, status=429, retry_after=3)   # the next 2 requests get 429
        emu.set_time(1_800_000_000)    # freeze the emulator clock (Unix seconds)
        ...
        assert emu.calls == 3
        assert [x.response.status for x in emu.log] == [429, 429, 200]

Requests are handled one at a time (a single lock), so subclasses need no locking of their
own. An exception raised by ``handle`` becomes a 500 and is kept in ``internal_errors`` so a
test can assert the emulator itself did not break.
"""

from __future__ import annotations

import datetime as dt
import json
import ssl
import threading
import time
import traceback
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

from tests.emulators.tls import TlsFiles


@dataclass(frozen=True)
class Request:
    """One received request. ``headers`` keys are lower-case; ``query`` keeps repeats."""

    method: str
    path: str
    query: Mapping[str, list[str]]
    headers: Mapping[str, str]
    body: bytes
    received_at: float

    def arg(self, name: str) -> str | None:
        """The first query-string value of ``name``."""
        values = self.query.get(name)
        return values[0] if values else None

    @property
    def content_type(self) -> str:
        """The media type without parameters, lower-case (``""`` when absent)."""
        return self.headers.get("content-type", "").split(";")[0].strip().lower()

    def json(self) -> Any:
        """The body parsed as JSON; raises ``ValueError`` when it is not JSON."""
        return json.loads(self.body)

    def form(self) -> dict[str, str]:
        """The body parsed as ``application/x-www-form-urlencoded`` (first value per key)."""
        parsed = parse_qs(self.body.decode("utf-8"), keep_blank_values=True)
        return {key: values[0] for key, values in parsed.items()}


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


@dataclass(frozen=True)
class Exchange:
    """A logged request and the response it got."""

    request: Request
    response: Response


@dataclass
class _Fault:
    remaining: int
    response: Response


class EmulatorServer:
    """Base class of the HTTP emulators. Subclasses implement :meth:`handle`."""

    def __init__(self, *, tls: TlsFiles | None = None) -> None:
        self._tls = tls
        self._lock = threading.RLock()
        self._faults: list[_Fault] = []
        self._frozen_time: float | None = None
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.log: list[Exchange] = []
        self.internal_errors: list[str] = []

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> Self:
        """Bind an ephemeral port on 127.0.0.1 and serve in a daemon thread."""
        server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        server.daemon_threads = True
        if self._tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(self._tls.server_cert, self._tls.server_key)
            server.socket = context.wrap_socket(server.socket, server_side=True)
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and release the port."""
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
    def url(self) -> str:
        """Base URL without a trailing slash, e.g. ``http://127.0.0.1:54321``."""
        if self._server is None:
            raise RuntimeError("emulator not started")
        scheme = "https" if self._tls is not None else "http"
        return f"{scheme}://127.0.0.1:{self._server.server_address[1]}"

    # -- inspection ----------------------------------------------------------------------

    @property
    def calls(self) -> int:
        """Number of requests received, faulted ones included."""
        return len(self.log)

    # -- clock ---------------------------------------------------------------------------

    def now(self) -> float:
        """Emulator time in Unix seconds: the frozen time if set, else the wall clock."""
        return time.time() if self._frozen_time is None else self._frozen_time

    def set_time(self, when: float | dt.datetime | None) -> None:
        """Freeze the clock at ``when`` (Unix seconds or aware datetime); ``None`` unfreezes."""
        self._frozen_time = when.timestamp() if isinstance(when, dt.datetime) else when

    def advance(self, seconds: float) -> None:
        """Move the clock forward (freezing it at the current time first)."""
        self._frozen_time = self.now() + seconds

    # -- fault injection -----------------------------------------------------------------

    def fail_next(
        self,
        times: int = 1,
        status: int = 500,
        *,
        retry_after: int | None = None,
        payload: Any = None,
    ) -> None:
        """Answer the next ``times`` requests with ``status`` instead of handling them.

        ``retry_after`` adds a ``Retry-After`` header (seconds); ``payload`` replaces the
        body that :meth:`fault_payload` would produce. Faults queue in call order.
        """
        body = self.fault_payload(status) if payload is None else payload
        headers = {} if retry_after is None else {"Retry-After": str(retry_after)}
        self.inject(Response.json(status, body, headers), times)

    def inject(self, response: Response, times: int = 1) -> None:
        """Answer the next ``times`` requests with exactly ``response``."""
        with self._lock:
            self._faults.append(_Fault(times, response))

    def fault_payload(self, status: int) -> Any:
        """JSON body of an injected fault; override to mimic the platform's error shape."""
        return {"error": {"code": status, "message": f"injected fault {status}"}}

    # -- subclass API --------------------------------------------------------------------

    def handle(self, request: Request) -> Response:
        """Answer one request. Called under the emulator lock."""
        raise NotImplementedError

    # -- internals -----------------------------------------------------------------------

    def _dispatch(self, request: Request) -> Response:
        with self._lock:
            if self._faults:
                fault = self._faults[0]
                fault.remaining -= 1
                if fault.remaining <= 0:
                    self._faults.pop(0)
                response = fault.response
            else:
                try:
                    response = self.handle(request)
                except Exception:
                    self.internal_errors.append(traceback.format_exc())
                    response = Response.json(500, {"error": {"message": "emulator error"}})
            self.log.append(Exchange(request, response))
            return response


def _handler_for(emulator: EmulatorServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Headers and body leave in one segment (buffered, flushed after each request), with
        # TCP_NODELAY: no Nagle/delayed-ACK stall of ~40 ms per keep-alive response.
        wbufsize = 1 << 16
        disable_nagle_algorithm = True

        def _serve(self) -> None:
            parts = urlsplit(self.path)
            request = Request(
                method=self.command,
                path=parts.path,
                query=parse_qs(parts.query, keep_blank_values=True),
                headers={key.lower(): value for key, value in self.headers.items()},
                body=self._read_body(),
                received_at=emulator.now(),
            )
            response = emulator._dispatch(request)
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

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _serve

        def log_message(self, format: str, *args: Any) -> None:
            """Keep test output quiet."""

    return Handler
