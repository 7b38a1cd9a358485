"""Request guards of the collector: client IP, per-IP rate limit, body limit, bots, CORS,
lead signatures. Each refusal is a ``Refused`` with its HTTP status and a reason label."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
import time
from collections.abc import Callable

from starlette.requests import Request

from revsync.config.collector import CollectorConfig, CollectorSite


class Refused(Exception):
    """A request the collector will not take: ``status`` to answer, ``reason`` to count."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status, self.reason = status, reason


def client_ip(request: Request, trust_forwarded: bool) -> str | None:
    """The client's IP address (``None`` when the peer is no IP, e.g. a Unix socket)."""
    value = request.client.host if request.client else None
    if trust_forwarded:
        forwarded = request.headers.get("x-forwarded-for")
        if forwarded:
            value = forwarded.split(",")[0].strip()
    try:
        return str(ipaddress.ip_address(value)) if value else None
    except ValueError:
        return None


class RateLimit:
    """At most ``per_minute`` requests per key in each minute (a fixed window)."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute, self.clock = per_minute, clock
        self.window = -1
        self.counts: dict[str, int] = {}

    def check(self, key: str) -> None:
        window = int(self.clock() // 60)
        if window != self.window:  # a new minute: every count starts again
            self.window, self.counts = window, {}
        count = self.counts.get(key, 0) + 1
        self.counts[key] = count
        if count > self.per_minute:
            raise Refused(429, "rate_limited")


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 past ``limit`` bytes (declared or streamed)."""
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        raise Refused(413, "too_large")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise Refused(413, "too_large")
        chunks.append(chunk)
    return b"".join(chunks)


class Bots:
    def __init__(self, pattern: str) -> None:
        self.pattern = re.compile(pattern, re.IGNORECASE)
        self.known: dict[str, bool] = {}  # browsers send few distinct user agents

    def is_bot(self, user_agent: str | None) -> bool:
        if not user_agent:
            return True
        verdict = self.known.get(user_agent)
        if verdict is None:
            verdict = bool(self.pattern.search(user_agent[:1000]))
            if len(self.known) >= 10_000:
                self.known.clear()
            self.known[user_agent] = verdict
        return verdict


def check_origin(request: Request, site: CollectorSite) -> str:
    """The request's Origin, which must be one of the site's origins (403 otherwise)."""
    origin = request.headers.get("origin")
    if origin is None or origin.lower() not in site.origins:
        raise Refused(403, "origin")
    return origin


def any_origin(config: CollectorConfig, origin: str | None) -> bool:
    return origin is not None and any(origin.lower() in s.origins for s in config.sites)


def cors_headers(origin: str) -> dict[str, str]:
    return {
        "access-control-allow-origin": origin,
        "access-control-allow-credentials": "true",
        "vary": "Origin",
    }


def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    """The ``X-Revsync-Signature`` header of a lead request: ``t=<unix>,v1=<hex>``."""
    digest = hmac.new(secret, str(timestamp).encode() + b"." + body, hashlib.sha256)
    return f"t={timestamp},v1={digest.hexdigest()}"


def verify(secret: bytes, header: str | None, body: bytes, now: float, max_age: int) -> None:
    """Refuse (401) an unsigned, wrongly signed or stale lead request."""
    if not header:
        raise Refused(401, "unsigned")
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    stamp, given = parts.get("t", ""), parts.get("v1", "")
    if not stamp.isdigit() or len(stamp) > 12:
        raise Refused(401, "bad_signature")
    if abs(now - int(stamp)) > max_age:
        raise Refused(401, "stale")
    expected = sign(secret, int(stamp), body).partition(",v1=")[2]
    if not hmac.compare_digest(expected, given):
        raise Refused(401, "bad_signature")
