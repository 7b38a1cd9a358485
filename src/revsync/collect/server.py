"""``revsync serve``: the collector, an ASGI (Starlette) app.

Browsers get the snippet (``GET /v1/revsync.js``) and send session starts and leads to
``POST /v1/collect`` and ``POST /v1/identify``; lead tools send signed ``POST /v1/leads``.
No endpoint returns stored data. A request is answered 204 once its rows are committed
(see ``writer``).
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from pydantic import BaseModel, ValidationError
from sqlalchemy import Engine, text
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from revsync.collect import guard
from revsync.collect.events import (
    CollectEvent,
    IdentifyEvent,
    LeadEvent,
    RowMaker,
    consent_allows,
)
from revsync.collect.guard import Refused
from revsync.collect.snippet import Snippet, render
from revsync.collect.writer import BatchWriter, WriteFailed
from revsync.config.collector import CollectorConfig, CollectorSite
from revsync.config.mapping import RevsyncConfig
from revsync.errors import ConfigError
from revsync.rows import RowError

log = logging.getLogger(__name__)
_VISITOR = re.compile(r"^[A-Za-z0-9._-]{8,128}$")
TWO_YEARS = 2 * 365 * 86400
_JSON = {"content-type": "application/json"}
_M = TypeVar("_M", bound=BaseModel)


class _Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "revsync_collector_requests", "Requests by endpoint and status.",
            ["endpoint", "status"], registry=self.registry,
        )  # fmt: skip
        self.written = Counter(
            "revsync_collector_events_written", "Rows committed, by kind.", ["kind"],
            registry=self.registry,
        )  # fmt: skip
        self.rejects = Counter(
            "revsync_collector_rejects", "Requests refused or dropped, by reason.", ["reason"],
            registry=self.registry,
        )  # fmt: skip
        self.write_seconds = Histogram(
            "revsync_collector_write_seconds", "Time to commit one batch.",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
            registry=self.registry,
        )  # fmt: skip

    def on_written(self, kind: str, rows: int, seconds: float) -> None:
        self.written.labels(kind).inc(rows)
        if kind == "touchpoint" or rows:
            self.write_seconds.observe(seconds)


def _secrets(config: CollectorConfig, environ: Mapping[str, str]) -> dict[str, bytes]:
    out = {}
    for site in config.sites:
        if site.leads_secret_env:
            value = environ.get(site.leads_secret_env, "")
            if len(value) < 16:
                raise ConfigError(
                    f"collector site {site.key}: ${site.leads_secret_env} must hold the leads "
                    "HMAC secret (16 characters or more)"
                )
            out[site.key] = value.encode()
    return out


class Collector:
    """The collector's state: config, row maker, guards, writer, metrics; ``app`` serves it."""

    def __init__(
        self,
        mapping: RevsyncConfig,
        engine: Engine,
        *,
        environ: Mapping[str, str] | None = None,
        clock: Callable[[], datetime] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if mapping.collector is None:
            raise ConfigError("the mapping has no `collector:` block; add one to run the collector")
        self.config = config = mapping.collector
        self.engine = engine
        self.clock = clock or (lambda: datetime.now(UTC))
        self.rows = RowMaker(mapping, config)
        self.secrets = _secrets(config, os.environ if environ is None else environ)
        self.limit = guard.RateLimit(config.rate_per_minute, monotonic)
        self.bots = guard.Bots(config.bot_pattern)
        self.metrics = _Metrics()
        self.writer = BatchWriter(
            engine, config.flush_events, config.flush_ms, self.metrics.on_written
        )
        self.snippets: dict[str, tuple[Snippet, bytes]] = {}
        for site in config.sites:
            snippet = render(config, site)
            self.snippets[site.key] = (snippet, gzip.compress(snippet.body, 9))
        self.app = Starlette(
            routes=[
                Route("/v1/revsync.js", self.script, methods=["GET"]),
                Route("/v1/collect", self.collect, methods=["POST", "OPTIONS"]),
                Route("/v1/identify", self.identify, methods=["POST", "OPTIONS"]),
                Route("/v1/leads", self.leads, methods=["POST"]),
                Route("/healthz", self.healthz, methods=["GET"]),
                Route("/metrics", self.prometheus, methods=["GET"]),
            ],
            lifespan=self._lifespan,
        )

    @asynccontextmanager
    async def _lifespan(self, _app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await run_in_threadpool(self.writer.close)  # pending batches are committed
            log.info("revsync collector: stopped, every answered event committed")

    def close(self) -> None:
        self.writer.close()

    # --- helpers ---------------------------------------------------------------------

    def _cookie(self, request: Request, site: CollectorSite, vid: str) -> str | None:
        """The visitor cookie to set when this request came to the site's own domain."""
        domain = site.cookie_domain
        host = (request.url.hostname or "").lower()
        if domain is None or not (host == domain or host.endswith("." + domain)):
            return None
        scheme = request.url.scheme
        if self.config.trust_forwarded:
            scheme = request.headers.get("x-forwarded-proto", scheme)
        cookie = f"{self.config.cookie_name}={vid}; Max-Age={TWO_YEARS}; Path=/; SameSite=Lax"
        if host != domain:
            cookie += f"; Domain={domain}"
        return cookie + ("; Secure" if scheme == "https" else "")

    def _refusal(self, exc: Refused, headers: dict[str, str], field: str | None = None) -> Response:
        self.metrics.rejects.labels(exc.reason).inc()
        body: dict[str, Any] = {"error": exc.reason}
        if field:
            body["field"] = field
        return Response(json.dumps(body), exc.status, {**headers, **_JSON})

    async def _guarded(
        self, request: Request, endpoint: str, handle: Callable[[], Awaitable[Response]]
    ) -> Response:
        """Rate limit, then ``handle``; every refusal is counted and answered plainly."""
        origin = request.headers.get("origin")
        allowed = origin is not None and guard.any_origin(self.config, origin)
        headers = guard.cors_headers(origin) if origin is not None and allowed else {}
        try:
            self.limit.check(guard.client_ip(request, self.config.trust_forwarded) or "-")
            response = await handle()
        except Refused as exc:
            response = self._refusal(exc, headers)
        except _Invalid as exc:
            response = self._refusal(Refused(exc.status, "invalid"), headers, exc.field)
        except WriteFailed:
            response = self._refusal(Refused(503, "store_unavailable"), headers)
        self.metrics.requests.labels(endpoint, str(response.status_code)).inc()
        return response

    async def _parse(self, request: Request, model: type[_M]) -> tuple[_M, bytes]:
        body = await guard.read_body(request, self.config.max_body_bytes)
        try:
            return model.model_validate_json(body), body
        except ValidationError as exc:
            error = exc.errors(include_input=False, include_url=False)[0]
            if error["type"] == "json_invalid":
                raise _Invalid(400, None) from None
            raise _Invalid(422, ".".join(str(p) for p in error["loc"]) or None) from None

    def _site(self, key: str) -> CollectorSite:
        site = self.config.site(key)
        if site is None:
            raise Refused(403, "site")
        return site

    def _preflight(self, request: Request) -> Response:
        origin = request.headers.get("origin")
        if not guard.any_origin(self.config, origin):
            return self._refusal(Refused(403, "origin"), {})
        assert origin is not None
        return Response(status_code=204, headers={
            **guard.cors_headers(origin),
            "access-control-allow-methods": "POST",
            "access-control-allow-headers": "content-type",
            "access-control-max-age": "86400",
        })  # fmt: skip

    async def _browser_event(
        self,
        request: Request,
        model: type[CollectEvent] | type[IdentifyEvent],
        rows: Callable[[Any, datetime, str | None], tuple[list[dict[str, Any]], ...]],
    ) -> Response:
        event, _ = await self._parse(request, model)
        site = self._site(event.site)
        headers = guard.cors_headers(guard.check_origin(request, site))
        user_agent = request.headers.get("user-agent")
        if self.bots.is_bot(user_agent):
            self.metrics.rejects.labels("bot").inc()
            return Response(status_code=204, headers=headers)
        if not consent_allows(site.consent, event.consent):
            self.metrics.rejects.labels("no_consent").inc()
            return Response(status_code=204, headers=headers)
        try:
            touchpoints, identities = rows(event, self.clock(), user_agent)
        except RowError as exc:
            raise _Invalid(422, exc.field) from None
        await self.writer.put(touchpoints, identities)
        cookie = self._cookie(request, site, event.vid)
        if cookie:
            headers["set-cookie"] = cookie
        return Response(status_code=204, headers=headers)

    # --- endpoints -------------------------------------------------------------------

    async def collect(self, request: Request) -> Response:
        if request.method == "OPTIONS":
            return self._preflight(request)

        def rows(event: CollectEvent, now: datetime, ua: str | None) -> tuple[list[Any], ...]:
            ip = guard.client_ip(request, self.config.trust_forwarded)
            return [self.rows.touchpoint(event, now, ua, ip)], []

        async def handle() -> Response:
            return await self._browser_event(request, CollectEvent, rows)

        return await self._guarded(request, "collect", handle)

    async def identify(self, request: Request) -> Response:
        if request.method == "OPTIONS":
            return self._preflight(request)

        def rows(event: IdentifyEvent, now: datetime, _ua: str | None) -> tuple[list[Any], ...]:
            identity = self.rows.identity(
                event.vid, now, event.event, event.email, event.phone, event.crmId
            )
            return [], [identity]

        async def handle() -> Response:
            return await self._browser_event(request, IdentifyEvent, rows)

        return await self._guarded(request, "identify", handle)

    async def leads(self, request: Request) -> Response:
        async def handle() -> Response:
            lead, body = await self._parse(request, LeadEvent)
            site = self._site(lead.site)
            secret = self.secrets.get(site.key)
            if secret is None:
                raise Refused(403, "leads_disabled")
            now = self.clock()
            guard.verify(
                secret, request.headers.get("x-revsync-signature"), body, now.timestamp(),
                self.config.lead_max_age_seconds,
            )  # fmt: skip
            try:
                touchpoints, identity = self.rows.lead(lead, now)
            except RowError as exc:
                raise _Invalid(422, exc.field) from None
            await self.writer.put(touchpoints, [identity])
            return Response(status_code=204)

        return await self._guarded(request, "leads", handle)

    async def script(self, request: Request) -> Response:
        site = self.config.site(request.query_params.get("site", ""))
        if site is None:
            self.metrics.requests.labels("script", "404").inc()
            return Response("unknown site\n", 404, media_type="text/plain")
        snippet, zipped = self.snippets[site.key]
        served_here = site.cookie_domain is not None
        headers = {
            "etag": snippet.etag,
            "cache-control": "no-cache" if served_here else "public, max-age=3600",
            "vary": "Accept-Encoding",
            "x-content-type-options": "nosniff",
        }
        # An existing visitor cookie is renewed from the server (Safari caps the ones
        # scripts set at 7 days); a new one is made only by the snippet once the page's
        # consent allows it, and renewed by the answer to its first event.
        current = request.cookies.get(self.config.cookie_name, "")
        cookie = self._cookie(request, site, current) if _VISITOR.match(current) else None
        if cookie:
            headers["set-cookie"] = cookie
        if snippet.etag in request.headers.get("if-none-match", ""):
            self.metrics.requests.labels("script", "304").inc()
            return Response(status_code=304, headers=headers)
        body = snippet.body
        if "gzip" in request.headers.get("accept-encoding", ""):
            body, headers["content-encoding"] = zipped, "gzip"
        self.metrics.requests.labels("script", "200").inc()
        return Response(body, 200, headers, media_type="application/javascript; charset=utf-8")

    async def healthz(self, _request: Request) -> Response:
        def ping() -> None:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))

        try:
            await run_in_threadpool(ping)
        except Exception as exc:  # any store failure is "unhealthy"
            log.warning("health check: the store is unreachable (%s)", type(exc).__name__)
            return Response("store unreachable\n", 503, media_type="text/plain")
        return Response("ok\n", 200, media_type="text/plain")

    async def prometheus(self, _request: Request) -> Response:
        body = generate_latest(self.metrics.registry)
        return Response(body, 200, {"content-type": CONTENT_TYPE_LATEST})


class _Invalid(Exception):
    def __init__(self, status: int, field: str | None) -> None:
        super().__init__(field)
        self.status, self.field = status, field



def serve(collector: Collector, host: str, port: int) -> None:
    """Serve under uvicorn until SIGTERM/SIGINT; pending rows are committed before exit."""
    import uvicorn

    uvicorn.run(
        collector.app,
        host=host,
        port=port,
        proxy_headers=False,  # X-Forwarded-* only with trust_forwarded, read by the app
        access_log=False,  # access lines would hold client IPs
        log_level="warning",
        timeout_graceful_shutdown=20,
    )
