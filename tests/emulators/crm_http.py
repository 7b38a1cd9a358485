"""A small threaded HTTP(S) server base for the CRM emulators.

Subclasses implement :meth:`EmulatorServer.handle`; the base gives them a loopback server on
an ephemeral port (optionally TLS), a request log with counters, one-shot fault injection and
a settable clock.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.emulators.loopback import Fault, LoopbackServer, Response
from tests.emulators.tls import TlsFiles

__all__ = ["EmulatorServer", "Fault", "Request", "Response", "json_response"]


@dataclass(frozen=True)
class Request:
    """One received request; ``query`` maps each parameter to its last value, ``repeats``
    to all of them in order."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    repeats: dict[str, list[str]]

    def header(self, name: str) -> str | None:
        """Header value by case-insensitive name."""
        return self.headers.get(name.lower())

    def json(self) -> Any:
        """The body decoded as JSON (``ValueError`` when it is not)."""
        return json.loads(self.body or b"null")


def json_response(status: int, payload: Any, headers: dict[str, str] | None = None) -> Response:
    """A JSON response."""
    body = json.dumps(payload).encode()
    content_type = {"Content-Type": "application/json;charset=UTF-8"}
    return Response(status, body, {**content_type, **(headers or {})})


class EmulatorServer(LoopbackServer):
    """Base class: start/stop, request log, fault injection, clock."""

    def __init__(self, tls: TlsFiles | None = None) -> None:
        super().__init__(tls=tls)
        self._clock: dt.datetime | None = None
        self.requests: list[Request] = []

    @property
    def base_url(self) -> str:
        """``http(s)://127.0.0.1:PORT`` (no trailing slash)."""
        return self._origin

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
        self._add_fault(response, times, path_contains)

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

    def respond(self, method: str, target: str, headers: dict[str, str], body: bytes) -> Response:
        parts = urlsplit(target)
        repeats = parse_qs(parts.query, keep_blank_values=True)
        query = {k: v[-1] for k, v in repeats.items()}
        request = Request(method, parts.path, query, headers, body, repeats)
        try:
            with self._lock:
                self.requests.append(request)
            return self._take_fault(request.path) or self.handle(request)
        except Exception as exc:  # an emulator bug must surface as a 500, not a hang
            return json_response(500, {"error": f"emulator error: {exc!r}"})

    def handle(self, request: Request) -> Response:
        """Answer one request; subclasses override."""
        raise NotImplementedError
