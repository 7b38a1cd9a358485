"""``revsync serve``: the collector, an ASGI app.

Browsers get the snippet (``GET /v1/revsync.js``) and send session starts and leads to
``POST /v1/collect`` and ``POST /v1/identify`` (served by ``browser``, the hot path);
lead tools send signed ``POST /v1/leads``. No endpoint returns stored data. A request is
answered 204 once its rows are committed (see ``writer``).
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import re
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import Engine, text
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from revsync.collect import guard
from revsync.collect.browser import PATHS, Browser
from revsync.collect.events import LeadEvent, RowMaker, parse
from revsync.collect.guard import Refused
from revsync.collect.metrics import Metrics
from revsync.collect.snippet import Snippet, render
from revsync.collect.writer import BatchWriter, WriteFailed
from revsync.config.collector import CollectorConfig, CollectorSite
from revsync.config.mapping import RevsyncConfig
from revsync.errors import ConfigError
from revsync.rows import RowError

log = logging.getLogger(__name__)
_VISITOR = re.compile(r"^[A-Za-z0-9._-]{8,128}$")
_JSON = {"content-type": "application/json"}


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
        self.metrics = Metrics()
        self.writer = BatchWriter(
            engine, config.flush_events, config.flush_ms, self.metrics.on_written
        )
        self.snippets: dict[str, tuple[Snippet, bytes]] = {}
        for site in config.sites:
            snippet = render(config, site)
            self.snippets[site.key] = (snippet, gzip.compress(snippet.body, 9))
        self.browser = Browser(
            config, self.rows, self.writer, self.metrics, self.clock, self.limit, self.bots
        )
        self.starlette = Starlette(
            routes=[
                Route("/v1/revsync.js", self.script, methods=["GET"]),
                Route("/v1/leads", self.leads, methods=["POST"]),
                Route("/healthz", self.healthz, methods=["GET"]),
                Route("/metrics", self.prometheus, methods=["GET"]),
            ],
            lifespan=self._lifespan,
        )
        browser, starlette = self.browser, self.starlette

        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            """The browser endpoints on their lean path, the rest on Starlette."""
            if scope["type"] == "http" and scope["path"] in PATHS:
                await browser(scope, receive, send)
            else:
                await starlette(scope, receive, send)

        self.app = app  # an ASGI 3 function (uvicorn tells the interface by its type)

    @asynccontextmanager
    async def _lifespan(self, _app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await run_in_threadpool(self.writer.close)  # pending batches are committed
            log.info("revsync collector: stopped, every answered event committed")

    def close(self) -> None:
        self.writer.close()

    # --- the Starlette endpoints: leads, the snippet, health and metrics ----------------

    def _cookie(self, request: Request, site: CollectorSite, vid: str) -> str | None:
        scheme = request.url.scheme
        if self.config.trust_forwarded:
            scheme = request.headers.get("x-forwarded-proto", scheme)
        return guard.visitor_cookie(self.config, site, vid, request.url.netloc, scheme)

    def _refusal(self, exc: Refused, request: Request) -> Response:
        self.metrics.reject(exc.reason)
        body: dict[str, Any] = {"error": exc.reason}
        if exc.field:
            body["field"] = exc.field
        origin = request.headers.get("origin")
        cors = origin is not None and origin.lower() in self.browser.origins
        headers = guard.cors_headers(origin) if origin is not None and cors else {}
        return Response(json.dumps(body), exc.status, {**headers, **_JSON})

    async def leads(self, request: Request) -> Response:
        """A signed lead from a server (call tracking, chat, form backend)."""
        try:
            self.limit.check(
                guard.client_ip(
                    request.client.host if request.client else None,
                    request.headers.get("x-forwarded-for"),
                    self.config.trust_forwarded,
                )
                or "-"
            )
            await self._lead(request)
        except Refused as exc:
            response = self._refusal(exc, request)
        except WriteFailed:
            response = self._refusal(Refused(503, "store_unavailable"), request)
        else:
            response = Response(status_code=204)
        self.metrics.request("leads", response.status_code)
        return response

    async def _lead(self, request: Request) -> None:
        body = await guard.read_body(
            request.receive, request.headers.get("content-length"), self.config.max_body_bytes
        )
        lead = parse(LeadEvent, body)
        site = self.config.site(lead.site)
        if site is None:
            raise Refused(403, "site")
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
            raise Refused(422, "invalid", exc.field) from None
        await self.writer.put(touchpoints, [identity])

    async def script(self, request: Request) -> Response:
        site = self.config.site(request.query_params.get("site", ""))
        if site is None:
            self.metrics.request("script", 404)
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
            self.metrics.request("script", 304)
            return Response(status_code=304, headers=headers)
        body = snippet.body
        if "gzip" in request.headers.get("accept-encoding", ""):
            body, headers["content-encoding"] = zipped, "gzip"
        self.metrics.request("script", 200)
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


# uvicorn's settings for the collector; X-Forwarded-* only with trust_forwarded, read by
# the app; no access log (its lines would hold client IPs, and cost time on the hot path).
UVICORN: dict[str, Any] = {
    "proxy_headers": False,
    "access_log": False,
    "log_level": "warning",
    "timeout_graceful_shutdown": 20,
}


def serve(collector: Collector, host: str, port: int) -> None:
    """Serve under uvicorn until SIGTERM/SIGINT; pending rows are committed before exit."""
    import uvicorn

    uvicorn.run(collector.app, host=host, port=port, **UVICORN)
