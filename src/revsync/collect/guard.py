"""Request guards of the collector: client IP, per-IP rate limit, body limit, bots, CORS,
lead signatures. Each refusal is a ``Refused`` with its HTTP status and a reason label."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
import time
from collections.abc import Callable, MutableMapping
from typing import Any
from urllib.parse import urlsplit

from starlette.types import Receive

from revsync.config.collector import CollectorConfig, CollectorSite

TWO_YEARS = 2 * 365 * 86400


class Refused(Exception):
    """A request the collector will not take: ``status`` to answer, ``reason`` to count,
    and the ``field`` at fault when one is."""

    def __init__(self, status: int, reason: str, field: str | None = None) -> None:
        super().__init__(reason)
        self.status, self.reason, self.field = status, reason, field


class Gone(Exception):
    """The client went away before its request was read."""


def _remembered(cache: MutableMapping[str, Any], key: str, value: Any) -> None:
    if len(cache) >= 10_000:  # a bounded cache: start again
        cache.clear()
    cache[key] = value


_IPS: dict[str, str | None] = {}


def client_ip(peer: str | None, forwarded_for: str | None, trust_forwarded: bool) -> str | None:
    """The client's IP address, normalised (``None`` when the peer is no IP, e.g. a Unix
    socket); with ``trust_forwarded`` the first address of X-Forwarded-For."""
    value = peer
    if trust_forwarded and forwarded_for:
        value = forwarded_for.split(",")[0].strip()
    if not value:
        return None
    if value in _IPS:
        return _IPS[value]
    try:
        address: str | None = str(ipaddress.ip_address(value))
    except ValueError:
        address = None
    _remembered(_IPS, value, address)
    return address


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


async def read_body(receive: Receive, declared: str | None, limit: int) -> bytes:
    """The body from ASGI ``receive``, refused with 413 past ``limit`` bytes (declared in
    Content-Length or streamed); raises ``Gone`` when the client disconnects."""
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        raise Refused(413, "too_large")
    message = await receive()
    body: bytes = message.get("body", b"")
    if not message.get("more_body"):  # the common case: one message
        if message["type"] == "http.disconnect":
            raise Gone
        if len(body) > limit:
            raise Refused(413, "too_large")
        return body
    chunks, size = [body], len(body)
    while message.get("more_body"):
        message = await receive()
        if message["type"] == "http.disconnect":
            raise Gone
        chunk = message.get("body", b"")
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


def check_origin(origin: str | None, site: CollectorSite) -> str:
    """``origin``, which must be one of the site's origins (403 otherwise)."""
    if origin is None or origin.lower() not in site.origins:
        raise Refused(403, "origin")
    return origin


def cors_headers(origin: str) -> dict[str, str]:
    return {
        "access-control-allow-origin": origin,
        "access-control-allow-credentials": "true",
        "vary": "Origin",
    }


_HOSTS: dict[str, str] = {}


def host_name(host: str) -> str:
    """The name in a Host header (``t.example.com:8443`` -> ``t.example.com``), lower
    case; empty when it has none or is malformed."""
    known = _HOSTS.get(host)
    if known is None:
        try:
            known = urlsplit(f"//{host}").hostname or ""
        except ValueError:  # e.g. an unclosed IPv6 bracket
            known = ""
        _remembered(_HOSTS, host, known)
    return known


def visitor_cookie(
    config: CollectorConfig, site: CollectorSite, vid: str, host: str, scheme: str
) -> str | None:
    """The visitor cookie to set when the request came to the site's own domain
    (``host``: the Host header; ``scheme``: the request's, or X-Forwarded-Proto's)."""
    domain = site.cookie_domain
    if domain is None:
        return None
    name = host_name(host)
    if not (name == domain or name.endswith("." + domain)):
        return None
    cookie = f"{config.cookie_name}={vid}; Max-Age={TWO_YEARS}; Path=/; SameSite=Lax"
    if name != domain:
        cookie += f"; Domain={domain}"
    return cookie + ("; Secure" if scheme == "https" else "")


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
