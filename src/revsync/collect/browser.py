"""The browser endpoints — POST /v1/collect and /v1/identify and their CORS preflight —
as a plain ASGI callable: the collector's hot path, without Starlette's request, response
and routing objects, and with the answers' headers made once per origin.

Each request is rate limited by client IP, read (413 past the body limit), validated
(400, 422), checked against its site (403 for an unknown site or an origin not the site's),
dropped when a bot or without consent (204, not stored), and answered 204 once its rows
are committed (503 when the store could not take them).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

from starlette.types import Receive, Scope, Send

from revsync.collect import guard
from revsync.collect.events import (
    CollectEvent,
    IdentifyEvent,
    RowMaker,
    consent_allows,
    parse,
)
from revsync.collect.guard import Refused
from revsync.collect.metrics import Metrics
from revsync.collect.writer import BatchWriter, WriteFailed
from revsync.config.collector import CollectorConfig
from revsync.rows import RowError

Headers = list[tuple[bytes, bytes]]

PATHS = {"/v1/collect": "collect", "/v1/identify": "identify"}
_JSON = (b"content-type", b"application/json")
_PREFLIGHT = [
    (b"access-control-allow-methods", b"POST"),
    (b"access-control-allow-headers", b"content-type"),
    (b"access-control-max-age", b"86400"),
]
_NOT_ALLOWED = [(b"allow", b"POST, OPTIONS"), (b"content-type", b"text/plain; charset=utf-8")]


class Browser:
    """The ASGI callable for the paths in ``PATHS``."""

    def __init__(
        self,
        config: CollectorConfig,
        rows: RowMaker,
        writer: BatchWriter,
        metrics: Metrics,
        clock: Callable[[], datetime],
        limit: guard.RateLimit,
        bots: guard.Bots,
    ) -> None:
        self.config, self.rows, self.writer, self.metrics = config, rows, writer, metrics
        self.clock, self.limit, self.bots = clock, limit, bots
        self.sites = {site.key: site for site in config.sites}
        self.origins = frozenset(origin for site in config.sites for origin in site.origins)
        self._cors: dict[bytes, Headers] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        method = scope["method"]
        if method == "POST":
            await self._post(PATHS[scope["path"]], scope, receive, send)
        elif method == "OPTIONS":
            await self._preflight(scope, send)
        else:
            await _answer(send, 405, list(_NOT_ALLOWED), b"Method Not Allowed")

    def _cors_headers(self, origin: bytes | None) -> Headers:
        """CORS headers for an origin any site allows (none for another origin)."""
        if origin is None:
            return []
        headers = self._cors.get(origin)
        if headers is None:
            if origin.decode("latin-1").lower() not in self.origins:
                return []
            if len(self._cors) >= 1000:  # the same origins in other letter cases
                self._cors.clear()
            headers = self._cors[origin] = [
                (b"access-control-allow-origin", origin),
                (b"access-control-allow-credentials", b"true"),
                (b"vary", b"Origin"),
            ]
        return headers

    async def _refuse(self, send: Send, exc: Refused, headers: Headers) -> int:
        self.metrics.reject(exc.reason)
        body: dict[str, Any] = {"error": exc.reason}
        if exc.field:
            body["field"] = exc.field
        await _answer(send, exc.status, [*headers, _JSON], json.dumps(body).encode())
        return exc.status

    async def _preflight(self, scope: Scope, send: Send) -> None:
        cors = self._cors_headers(_header(scope, b"origin"))
        if not cors:
            await self._refuse(send, Refused(403, "origin"), [])
            return
        await _answer(send, 204, [*cors, *_PREFLIGHT])

    async def _post(self, endpoint: str, scope: Scope, receive: Receive, send: Send) -> None:
        headers = dict(reversed(scope["headers"]))  # the first of each name
        cors = self._cors_headers(headers.get(b"origin"))
        try:
            answer = await self._event(endpoint, scope, receive, headers)
        except guard.Gone:
            return  # nobody to answer
        except Refused as exc:
            status = await self._refuse(send, exc, cors)
        except WriteFailed:
            status = await self._refuse(send, Refused(503, "store_unavailable"), cors)
        else:
            status = 204
            await _answer(send, 204, [*cors, *answer] if answer else cors)
        self.metrics.request(endpoint, status)

    async def _event(
        self, endpoint: str, scope: Scope, receive: Receive, headers: dict[bytes, bytes]
    ) -> Headers:
        """Store the event; the headers to add to the 204 (its cookie), or a refusal."""
        config = self.config
        client = scope.get("client")
        ip = guard.client_ip(
            client[0] if client else None, _text(headers.get(b"x-forwarded-for")),
            config.trust_forwarded,
        )  # fmt: skip
        self.limit.check(ip or "-")
        body = await guard.read_body(
            receive, _text(headers.get(b"content-length")), config.max_body_bytes
        )
        event: CollectEvent | IdentifyEvent = (
            parse(CollectEvent, body) if endpoint == "collect" else parse(IdentifyEvent, body)
        )
        site = self.sites.get(event.site)
        if site is None:
            raise Refused(403, "site")
        guard.check_origin(_text(headers.get(b"origin")), site)
        user_agent = _text(headers.get(b"user-agent"))
        if self.bots.is_bot(user_agent):
            self.metrics.reject("bot")
            return []
        if not consent_allows(site.consent, event.consent):
            self.metrics.reject("no_consent")
            return []
        now = self.clock()
        try:
            if isinstance(event, CollectEvent):
                touchpoints = [self.rows.touchpoint(event, now, user_agent, ip)]
                identities = []
            else:
                touchpoints = []
                identities = [
                    self.rows.identity(
                        event.vid, now, event.event, event.email, event.phone, event.crmId
                    )
                ]
        except RowError as exc:
            raise Refused(422, "invalid", exc.field) from None
        await self.writer.put(touchpoints, identities)
        if site.cookie_domain is None:
            return []
        scheme = scope["scheme"]
        if config.trust_forwarded:
            scheme = _text(headers.get(b"x-forwarded-proto")) or scheme
        host = _text(headers.get(b"host"))
        if host is None:
            server = scope.get("server")
            host = f"{server[0]}:{server[1]}" if server else ""
        cookie = guard.visitor_cookie(config, site, event.vid, host, scheme)
        return [(b"set-cookie", cookie.encode("latin-1"))] if cookie else []


def _text(value: bytes | None) -> str | None:
    return None if value is None else value.decode("latin-1")


def _header(scope: Scope, name: bytes) -> bytes | None:
    return next((value for key, value in scope["headers"] if key == name), None)


async def _answer(send: Send, status: int, headers: Headers, body: bytes = b"") -> None:
    if body:
        headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
