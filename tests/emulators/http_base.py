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
import time
import traceback
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.emulators.loopback import RESET, LoopbackServer, Response
from tests.emulators.tls import TlsFiles

__all__ = ["EmulatorServer", "Exchange", "Request", "Response"]


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


@dataclass(frozen=True)
class Exchange:
    """A logged request and the response it got."""

    request: Request
    response: Response


class EmulatorServer(LoopbackServer):
    """Base class of the HTTP emulators. Subclasses implement :meth:`handle`."""

    def __init__(self, *, tls: TlsFiles | None = None) -> None:
        super().__init__(tls=tls)
        self._frozen_time: float | None = None
        self.log: list[Exchange] = []
        self.internal_errors: list[str] = []
        self.latency = 0.0  # seconds every answer waits after its request was handled
        # (status to answer instead, seconds to stall) for the next requests, each of which
        # is handled first: the platform processed it, only its answer goes wrong
        self._after_handling: list[tuple[int | None, float]] = []

    @property
    def url(self) -> str:
        """Base URL without a trailing slash, e.g. ``http://127.0.0.1:54321``."""
        if self._server is None:
            raise RuntimeError("emulator not started")
        return self._origin

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

    def process_then_fail(self, times: int = 1, status: int = 500) -> None:
        """Handle the next ``times`` requests (events are recorded), then answer ``status``."""
        self._after_handling += [(status, 0.0)] * times

    def process_then_stall(self, seconds: float, times: int = 1) -> None:
        """Handle the next ``times`` requests, then answer only after ``seconds`` (past a
        client's read timeout, the answer is lost though the events were recorded)."""
        self._after_handling += [(None, seconds)] * times

    def process_then_reset(self, times: int = 1) -> None:
        """Handle the next ``times`` requests, then reset the connection instead of answering
        (the body was read and the events recorded; the client sees a connection reset)."""
        self._after_handling += [(RESET, 0.0)] * times

    def inject(self, response: Response, times: int = 1) -> None:
        """Answer the next ``times`` requests with exactly ``response``."""
        self._add_fault(response, times)

    def fault_payload(self, status: int) -> Any:
        """JSON body of an injected fault; override to mimic the platform's error shape."""
        return {"error": {"code": status, "message": f"injected fault {status}"}}

    # -- subclass API --------------------------------------------------------------------

    def handle(self, request: Request) -> Response:
        """Answer one request. Called under the emulator lock."""
        raise NotImplementedError

    # -- internals -----------------------------------------------------------------------

    def respond(self, method: str, target: str, headers: dict[str, str], body: bytes) -> Response:
        parts = urlsplit(target)
        query = parse_qs(parts.query, keep_blank_values=True)
        request = Request(method, parts.path, query, headers, body, received_at=self.now())
        stall = 0.0
        with self._lock:
            response = self._take_fault(request.path)
            if response is None:
                try:
                    response = self.handle(request)
                except Exception:
                    self.internal_errors.append(traceback.format_exc())
                    response = Response.json(500, {"error": {"message": "emulator error"}})
                if self._after_handling:
                    status, stall = self._after_handling.pop(0)
                    if status == RESET:
                        response = Response(RESET)
                    elif status is not None:
                        response = Response.json(status, self.fault_payload(status))
            self.log.append(Exchange(request, response))
        if stall or self.latency:
            time.sleep(stall + self.latency)
        return response
