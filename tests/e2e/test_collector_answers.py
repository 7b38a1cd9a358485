"""The browser endpoints' answers, exactly: status, headers and body of each outcome (the
lean ASGI path answers as the Starlette endpoints did), and the metrics they count."""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from tests.e2e.test_collector_api import ORIGIN, UA, Clock, clock, open_client, visit

__all__ = ["clock"]  # the fixture
CORS = {
    "access-control-allow-origin": ORIGIN,
    "access-control-allow-credentials": "true",
    "vary": "Origin",
}
COOKIE = {
    "set-cookie": "_rsid=v0123456789abcdef; Max-Age=63072000; Path=/; SameSite=Lax; "
    "Domain=example.com; Secure"
}
SHOP = "https://shop.example.org"
SHOP_CORS = {**CORS, "access-control-allow-origin": SHOP}


def refused(body: dict[str, str], cors: dict[str, str] | None = None) -> dict[str, str]:
    raw = json.dumps(body)
    return {
        **(CORS if cors is None else cors),
        "content-type": "application/json",
        "content-length": str(len(raw)),
    }


IDENTIFY = {"site": "site-main-01", "vid": "v0123456789abcdef", "email": "ada@example.com"}
BAD_ROW = visit(url="https://www.example.com/?gclid=<x>")
CASES: list[tuple[str, str, str, Any, dict[str, Any], int, dict[str, str], bytes]] = [
    ("good", "POST", "/v1/collect", visit(), {}, 204, {**CORS, **COOKIE}, b""),
    ("identify", "POST", "/v1/identify", IDENTIFY, {}, 204, {**CORS, **COOKIE}, b""),
    ("not json", "POST", "/v1/collect", "{nope", {}, 400,
     refused({"error": "invalid"}), b'{"error": "invalid"}'),
    ("bad field", "POST", "/v1/collect", visit(vid="x"), {}, 422,
     refused({"error": "invalid", "field": "vid"}), b'{"error": "invalid", "field": "vid"}'),
    ("bad row", "POST", "/v1/collect", BAD_ROW, {}, 422,
     refused({"error": "invalid", "field": "landing_url"}),
     b'{"error": "invalid", "field": "landing_url"}'),
    ("wrong origin", "POST", "/v1/collect", visit(), {"origin": "https://evil.example"}, 403,
     refused({"error": "origin"}, {}), b'{"error": "origin"}'),
    ("another site's origin", "POST", "/v1/collect", visit(), {"origin": SHOP}, 403,
     refused({"error": "origin"}, SHOP_CORS), b'{"error": "origin"}'),
    ("no origin", "POST", "/v1/collect", visit(), {"origin": None}, 403,
     refused({"error": "origin"}, {}), b'{"error": "origin"}'),
    ("unknown site key", "POST", "/v1/collect", visit(site="no-such-site"), {}, 403,
     refused({"error": "site"}), b'{"error": "site"}'),
    ("too large", "POST", "/v1/collect", "x" * 2000, {}, 413,
     refused({"error": "too_large"}), b'{"error": "too_large"}'),
    ("bot", "POST", "/v1/collect", visit(), {"user-agent": "Googlebot/2.1"}, 204, CORS, b""),
    ("consent denied", "POST", "/v1/collect", visit(consent={"analytics_storage": "denied"}),
     {}, 204, CORS, b""),
    ("preflight", "OPTIONS", "/v1/collect", None, {"access-control-request-method": "POST"},
     204, {**CORS, "access-control-allow-methods": "POST",
           "access-control-allow-headers": "content-type", "access-control-max-age": "86400"},
     b""),
    ("preflight, wrong origin", "OPTIONS", "/v1/identify", None,
     {"origin": "https://evil.example"}, 403, refused({"error": "origin"}, {}),
     b'{"error": "origin"}'),
    ("GET", "GET", "/v1/collect", None, {}, 405,
     {"allow": "POST, OPTIONS", "content-type": "text/plain; charset=utf-8",
      "content-length": "18"}, b"Method Not Allowed"),
]  # fmt: skip


@pytest.fixture
def client(engine: Engine, clock: Clock) -> Iterator[TestClient]:
    with open_client(engine, clock, max_body_bytes=1024) as test_client:
        yield test_client


@pytest.mark.parametrize(
    ("method", "path", "body", "headers", "status", "answer", "content"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_each_outcome_is_answered_exactly(
    client: TestClient, method: str, path: str, body: Any, headers: dict[str, Any],
    status: int, answer: dict[str, str], content: bytes,
) -> None:  # fmt: skip
    if "origin" in headers and headers["origin"] is None:
        del client.headers["origin"]  # the client's default
    sent = {k: v for k, v in headers.items() if v}
    raw = body if body is None or isinstance(body, str) else json.dumps(body)
    response = client.request(method, path, content=raw, headers=sent)
    assert response.status_code == status
    assert dict(response.headers) == answer
    assert response.content == content


def test_rate_limited_answer_and_the_metrics_of_every_outcome(engine: Engine, clock: Clock) -> None:
    with open_client(engine, clock, rate_per_minute=3) as client:
        assert client.post("/v1/collect", content=json.dumps(visit())).status_code == 204
        assert client.post("/v1/collect", content=b"{nope").status_code == 400
        assert client.post("/v1/identify", content=json.dumps(IDENTIFY)).status_code == 204
        limited = client.post("/v1/collect", content=json.dumps(visit()))
        assert limited.status_code == 429 and limited.content == b'{"error": "rate_limited"}'
        assert dict(limited.headers) == refused({"error": "rate_limited"})
        client.options("/v1/collect", headers={"origin": "https://evil.example"})
        metrics = client.get("/metrics").text
    for line in (
        'revsync_collector_requests_total{endpoint="collect",status="204"} 1.0',
        'revsync_collector_requests_total{endpoint="collect",status="400"} 1.0',
        'revsync_collector_requests_total{endpoint="collect",status="429"} 1.0',
        'revsync_collector_requests_total{endpoint="identify",status="204"} 1.0',
        'revsync_collector_rejects_total{reason="invalid"} 1.0',
        'revsync_collector_rejects_total{reason="rate_limited"} 1.0',
        'revsync_collector_rejects_total{reason="origin"} 1.0',
        'revsync_collector_events_written_total{kind="identity"} 1.0',
    ):
        assert line in metrics


def asgi_post(client: TestClient, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """POST /v1/collect straight to the ASGI app, the body in ``messages``; what it sent."""
    import asyncio

    app = client.app
    scope = {
        "type": "http", "method": "POST", "path": "/v1/collect", "scheme": "https",
        "headers": [(b"origin", ORIGIN.encode()), (b"user-agent", UA.encode())],
        "client": ("203.0.113.9", 50000), "server": ("t.example.com", 443),
    }  # fmt: skip
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))  # type: ignore[arg-type]
    return sent


def test_a_body_streamed_past_the_limit_is_413_and_a_gone_client_gets_nothing(
    client: TestClient,
) -> None:
    chunks = [{"type": "http.request", "body": b"x" * 600, "more_body": True}] * 2
    sent = asgi_post(client, chunks)
    assert sent[0]["status"] == 413 and sent[1]["body"] == b'{"error": "too_large"}'
    gone = [{"type": "http.request", "body": b"{", "more_body": True}, {"type": "http.disconnect"}]
    assert asgi_post(client, gone) == []
    assert asgi_post(client, [{"type": "http.disconnect"}]) == []
