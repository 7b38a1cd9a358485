"""The collector through its ASGI app (Starlette's TestClient), on SQLite and PostgreSQL."""

from __future__ import annotations

import gzip
import hashlib
import json
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, func, select

with warnings.catch_warnings():  # "install httpx2": the suite's httpx is what it tests with
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from revsync.collect.guard import sign
from revsync.collect.server import Collector
from revsync.collect.snippet import sizes
from revsync.config.mapping import RevsyncConfig
from revsync.destinations.pii import normalize_email, sha256_hex
from revsync.store.schema import identities, touchpoints, visitors

NOW = datetime(2026, 3, 9, 14, 0, tzinfo=UTC)
ORIGIN = "https://www.example.com"
UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/156.0 Safari/537.36"
SECRET = "s3cret-for-leads-0123456789"


def mapping(**collector: Any) -> RevsyncConfig:
    sites = [
        {"key": "site-main-01", "origins": [ORIGIN], "cookie_domain": "example.com",
         "leads_secret_env": "LEADS_SECRET"},
        {"key": "site-strict-1", "origins": ["https://shop.example.org"], "consent": "required"},
    ]  # fmt: skip
    return RevsyncConfig.model_validate(
        {"sources": [], "collector": {"sites": sites, "flush_ms": 5, **collector}}
    )


class Clock:
    """The wall clock and the rate limiter's monotonic clock, both moved only by a test."""

    def __init__(self) -> None:
        self.now = NOW
        self.monotonic = 30.0  # mid-minute: the limiter's window never turns by itself

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@contextmanager
def open_client(engine: Engine, clock: Clock, **collector: Any) -> Iterator[TestClient]:
    app = Collector(
        mapping(**collector),
        engine,
        environ={"LEADS_SECRET": SECRET},
        clock=clock,
        monotonic=lambda: clock.monotonic,
    )
    with TestClient(app.app, base_url="https://t.example.com") as client:
        client.headers.update({"user-agent": UA, "origin": ORIGIN})
        yield client


@pytest.fixture
def client(engine: Engine, clock: Clock) -> Iterator[TestClient]:
    with open_client(engine, clock) as test_client:
        yield test_client


def visit(**extra: Any) -> dict[str, Any]:
    return {
        "site": "site-main-01",
        "vid": "v0123456789abcdef",
        "sid": "s0123456789abcdef",
        "url": "https://www.example.com/pricing?gclid=Cj0KCQabc123&utm_source=google&utm_medium=cpc&utm_campaign=brand",
        "ref": "https://www.google.com/",
        "title": "Pricing",
        "ga": "GA1.1.123456789.1700000000",
        "fbp": "fb.1.1700000000000.987654321",
        "consent": {"ad_user_data": "granted", "ad_personalization": "denied"},
        **extra,
    }


def post(client: TestClient, path: str, body: Any, **kw: Any) -> Any:
    return client.post(path, content=json.dumps(body), **kw)


def test_a_session_start_is_stored_with_click_ids_channel_and_truncated_ip(
    client: TestClient, engine: Engine
) -> None:
    response = post(client, "/v1/collect", visit())
    assert response.status_code == 204
    assert response.headers["access-control-allow-origin"] == ORIGIN
    cookie = response.headers["set-cookie"]
    assert cookie.startswith("_rsid=v0123456789abcdef;") and "Domain=example.com" in cookie
    assert "Secure" in cookie and "SameSite=Lax" in cookie and "Max-Age=63072000" in cookie
    with engine.connect() as conn:
        row = conn.execute(select(touchpoints)).mappings().one()
    assert row["visitor_id"] == "v0123456789abcdef"
    assert row["gclid"] == "Cj0KCQabc123" and row["channel"] == "Paid Search"
    assert (row["source"], row["medium"], row["campaign"]) == ("google", "cpc", "brand")
    assert row["ga_client_id"] == "123456789.1700000000"
    assert row["consent_ad_user_data"] is True and row["consent_ad_personalization"] is False
    assert row["occurred_at"] == NOW
    assert row["ip"] is None  # the test client is no IP; see test_ips_are_truncated


def test_fbclid_makes_fbc_in_metas_format(client: TestClient, engine: Engine) -> None:
    url = "https://www.example.com/?fbclid=IwAR0abcDEF_123"
    assert post(client, "/v1/collect", visit(url=url, fbp=None)).status_code == 204
    with engine.connect() as conn:
        fbc = conn.execute(select(touchpoints.c.fbc)).scalar_one()
    assert fbc == f"fb.1.{int(NOW.timestamp() * 1000)}.IwAR0abcDEF_123"


def test_identify_stores_hashes_only(client: TestClient, engine: Engine) -> None:
    body = {"site": "site-main-01", "vid": "v0123456789abcdef", "email": " Ada@Example.com ",
            "phone": "+1 415 555 0100", "event": "form"}  # fmt: skip
    assert post(client, "/v1/identify", body).status_code == 204
    with engine.connect() as conn:
        row = conn.execute(select(identities)).mappings().one()
        assert conn.execute(select(func.count()).select_from(visitors)).scalar_one() == 1
    assert row["email_sha256"] == sha256_hex(normalize_email("ada@example.com"))
    assert row["phone_sha256"] == sha256_hex("+14155550100")
    assert row["email"] is None and row["phone"] is None and row["event"] == "form"


def test_raw_pii_only_when_enabled(engine: Engine, clock: Clock) -> None:
    body = {"site": "site-main-01", "vid": "v0123456789abcdef", "email": "ada@example.com"}
    with open_client(engine, clock, store_raw_pii=True) as client:
        assert post(client, "/v1/identify", body).status_code == 204
    with engine.connect() as conn:
        assert conn.execute(select(identities.c.email)).scalar_one() == "ada@example.com"


@pytest.mark.parametrize(
    ("change", "status", "reason"),
    [
        ({"origin": "https://evil.example"}, 403, "origin"),
        ({"site": "no-such-site"}, 403, "site"),
        ({"vid": "x"}, 422, "invalid"),
        ({"url": "https://www.example.com/?gclid=<script>"}, 422, "invalid"),
        ({"extra": 1}, 422, "invalid"),
    ],
)
def test_bad_requests_are_refused_without_echoing(
    client: TestClient, engine: Engine, change: dict[str, Any], status: int, reason: str
) -> None:
    change = dict(change)
    headers = {"origin": change.pop("origin")} if "origin" in change else {}
    response = post(client, "/v1/collect", visit(**change), headers=headers)
    assert response.status_code == status and response.json()["error"] == reason
    assert "script" not in response.text
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(touchpoints)).scalar_one() == 0


def test_a_nul_character_is_refused_alone_not_with_its_batch(engine: Engine, clock: Clock) -> None:
    """PostgreSQL refuses NUL in text: the event is refused (422), the batch is stored."""
    import concurrent.futures

    with open_client(engine, clock, flush_ms=50) as client:
        bad = visit(url="https://www.example.com/\u0000x", fbp="fb.1.1700000000000.a\u0000")
        good = [visit(vid=f"visitor-{i:06d}") for i in range(4)]
        with concurrent.futures.ThreadPoolExecutor(5) as pool:
            answers = list(pool.map(lambda b: post(client, "/v1/collect", b), [bad, *good]))
    assert answers[0].status_code == 422 and answers[0].json()["error"] == "invalid"
    assert [a.status_code for a in answers[1:]] == [204] * 4
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(touchpoints)).scalar_one() == 4


def test_body_limit_rate_limit_and_not_json(engine: Engine, clock: Clock) -> None:
    with open_client(engine, clock, rate_per_minute=3, max_body_bytes=1024) as client:
        assert client.post("/v1/collect", content=b"x" * 2000).status_code == 413
        assert client.post("/v1/collect", content=b"{nope").status_code == 400
        assert post(client, "/v1/collect", visit()).status_code == 204
        assert post(client, "/v1/collect", visit()).status_code == 429
        clock.monotonic += 60  # the next minute: counts start again
        assert post(client, "/v1/collect", visit()).status_code == 204
        metrics = client.get("/metrics").text
    assert 'revsync_collector_rejects_total{reason="too_large"} 1.0' in metrics
    assert 'revsync_collector_rejects_total{reason="rate_limited"} 1.0' in metrics
    assert 'revsync_collector_events_written_total{kind="touchpoint"} 2.0' in metrics


def test_bots_and_denied_consent_are_answered_but_not_stored(
    client: TestClient, engine: Engine
) -> None:
    bot = {"user-agent": "Googlebot/2.1 (+http://www.google.com/bot.html)"}
    assert post(client, "/v1/collect", visit(), headers=bot).status_code == 204
    denied = visit(consent={"analytics_storage": "denied"})
    assert post(client, "/v1/collect", denied).status_code == 204
    strict = {"origin": "https://shop.example.org"}
    silent = visit(site="site-strict-1", url="https://shop.example.org/")
    assert post(client, "/v1/collect", silent, headers=strict).status_code == 204
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(touchpoints)).scalar_one() == 0
    granted = visit(
        site="site-strict-1",
        url="https://shop.example.org/",
        consent={"analytics_storage": "granted"},
    )
    assert post(client, "/v1/collect", granted, headers=strict).status_code == 204
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(touchpoints)).scalar_one() == 1


def test_preflight_allows_only_listed_origins(client: TestClient) -> None:
    ok = client.options("/v1/collect", headers={"access-control-request-method": "POST"})
    assert ok.status_code == 204 and ok.headers["access-control-allow-origin"] == ORIGIN
    bad = client.options("/v1/identify", headers={"origin": "https://evil.example"})
    assert bad.status_code == 403 and "access-control-allow-origin" not in bad.headers


def test_snippet_is_small_cacheable_and_sets_the_visitor_cookie(client: TestClient) -> None:
    minified, zipped = sizes()
    assert minified < 5 * 1024 and zipped < 2 * 1024
    response = client.get("/v1/revsync.js?site=site-main-01")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/javascript")
    assert '"s":"site-main-01"' in response.text and "__CONFIG__" not in response.text
    etag = response.headers["etag"]
    assert "set-cookie" not in response.headers  # a new visitor's cookie waits for consent
    again = client.get(
        "/v1/revsync.js?site=site-main-01",
        headers={"if-none-match": etag, "cookie": "_rsid=abcdef0123456789"},
    )
    assert again.status_code == 304 and again.headers["set-cookie"].startswith(
        "_rsid=abcdef0123456789;"
    )
    assert client.get("/v1/revsync.js?site=nope").status_code == 404
    raw = client.get("/v1/revsync.js?site=site-main-01", headers={"accept-encoding": "gzip"})
    assert len(gzip.compress(raw.content)) < 2048
    strict = client.get("/v1/revsync.js?site=site-strict-1", headers={"cookie": "_rsid=x"})
    assert "set-cookie" not in strict.headers  # not a visitor ID; no cookie domain


def lead(client: TestClient, body: dict[str, Any], at: float, secret: str = SECRET) -> Any:
    raw = json.dumps(body).encode()
    header = sign(secret.encode(), int(at), raw)
    return client.post("/v1/leads", content=raw, headers={"x-revsync-signature": header})


def test_signed_leads_link_a_click_to_a_person(client: TestClient, engine: Engine) -> None:
    body = {"site": "site-main-01", "event": "call", "gclid": "Cj0KCQcall999",
            "phone": "+44 20 7946 0958"}  # fmt: skip
    now = NOW.timestamp()
    assert lead(client, body, now).status_code == 204
    assert lead(client, body, now - 3600).status_code == 401  # stale
    assert lead(client, body, now, secret="wrong-secret-0123456789").status_code == 401
    assert client.post("/v1/leads", content=json.dumps(body)).status_code == 401  # unsigned
    other = {**body, "site": "site-strict-1"}
    assert lead(client, other, now).status_code == 403  # no secret configured
    with engine.connect() as conn:
        tp = conn.execute(select(touchpoints)).mappings().one()
        ident = conn.execute(select(identities)).mappings().one()
    assert tp["gclid"] == "Cj0KCQcall999"  # channel: as an imported click row says
    assert ident["visitor_id"] == tp["visitor_id"] and ident["event"] == "call"
    assert ident["phone_sha256"] == hashlib.sha256(b"+442079460958").hexdigest()


def test_health_and_no_other_routes(client: TestClient) -> None:
    assert client.get("/healthz").text == "ok\n"
    assert client.get("/").status_code == 404
    assert client.get("/v1/collect").status_code == 405


def test_every_answered_event_is_stored_under_concurrency(engine: Engine, clock: Clock) -> None:
    """Many requests at once share batches; each 204 means its row is committed."""
    import concurrent.futures

    with open_client(engine, clock, flush_events=16, flush_ms=50) as client:

        def one(i: int, client: TestClient = client) -> int:
            event = visit(vid=f"visitor-{i:06d}", url=f"https://www.example.com/p{i}")
            return post(client, "/v1/collect", event).status_code

        started = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            statuses = list(pool.map(one, range(200)))
        assert time.monotonic() - started < 30
    assert statuses.count(204) == 200
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(touchpoints)).scalar_one() == 200


def test_time_is_the_collectors_clock(client: TestClient, engine: Engine, clock: Clock) -> None:
    post(client, "/v1/collect", visit())
    clock.now = NOW + timedelta(minutes=31)
    post(client, "/v1/collect", visit(sid="s-second-session"))
    with engine.connect() as conn:
        times = conn.execute(select(touchpoints.c.occurred_at).order_by("occurred_at")).scalars()
        assert list(times) == [NOW, NOW + timedelta(minutes=31)]


def test_ips_are_truncated_unless_configured(engine: Engine, clock: Clock) -> None:
    forwarded = {"x-forwarded-for": "203.0.113.77, 10.0.0.1"}
    with open_client(engine, clock, trust_forwarded=True) as client:
        assert post(client, "/v1/collect", visit(), headers=forwarded).status_code == 204
    with engine.connect() as conn:
        assert conn.execute(select(touchpoints.c.ip)).scalar_one() == "203.0.113.0"
