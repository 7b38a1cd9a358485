"""Hypothesis against the collector's endpoints: no input yields a 5xx."""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from revsync.collect.guard import sign
from revsync.collect.server import Collector
from revsync.store.engine import open_store
from tests.e2e.test_collector_api import ORIGIN, SECRET, UA, Clock, mapping, visit

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

FIELDS = ["site", "vid", "sid", "url", "ref", "title", "ga", "fbp", "fbc", "consent", "email",
          "phone", "crmId", "event", "gclid", "fbclid", "crm_id", "occurred_at"]  # fmt: skip
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True),
    st.text(max_size=80), st.sampled_from(["site-main-01", "granted", "form", "call",
    "https://www.example.com/?gclid=Cj0KCQabc123", "2026-03-09T14:00:00Z", "ada@example.com",
    "+1 415 555 0100", "GA1.1.1.2", "fb.1.1700000000000.x", "v0123456789abcdef"]),
)  # fmt: skip
values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6,
)  # fmt: skip
bodies = st.one_of(
    st.binary(max_size=300),
    st.dictionaries(st.sampled_from(FIELDS), values, max_size=8).map(json.dumps),
    st.builds(lambda change: json.dumps(visit(**change)),
              st.dictionaries(st.sampled_from(FIELDS), values, max_size=3)),
)  # fmt: skip
paths = st.sampled_from(["/v1/collect", "/v1/identify", "/v1/leads"])
headers = st.fixed_dictionaries(
    {},
    optional={
        "origin": st.sampled_from([ORIGIN, "https://evil.example", "null", ""]),
        "user-agent": st.sampled_from([UA, "", "Googlebot", "\u00e9\u00e9".encode()]),
        "x-revsync-signature": st.sampled_from(["", "t=1,v1=00", "t=abc", "v1=", "t=99999999999999"]),
        "x-forwarded-for": st.sampled_from(["203.0.113.9", "garbage", "::1, 1.2.3.4", ""]),
        "content-type": st.sampled_from(["text/plain", "application/json", "x/y"]),
    },
)  # fmt: skip


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    engine = open_store(f"sqlite:///{tmp_path_factory.mktemp('fuzz') / 'store.db'}")
    collector = Collector(
        mapping(trust_forwarded=True, rate_per_minute=1_000_000),
        engine,
        environ={"LEADS_SECRET": SECRET},
        clock=Clock(),
    )
    with TestClient(collector.app, base_url="https://t.example.com") as test_client:
        yield test_client
    engine.dispose()


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(path=paths, body=bodies, head=headers, signed=st.booleans())
def test_no_input_yields_a_server_error(
    client: TestClient, path: str, body: Any, head: dict[str, Any], signed: bool
) -> None:
    raw = body if isinstance(body, bytes) else body.encode()
    if signed and path == "/v1/leads":
        from tests.e2e.test_collector_api import NOW

        head = {**head, "x-revsync-signature": sign(SECRET.encode(), int(NOW.timestamp()), raw)}
    response = client.post(path, content=raw, headers=head)
    assert response.status_code < 500, response.text
    assert response.status_code in (204, 400, 401, 403, 413, 422, 429)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(query=st.text(max_size=40), cookie=st.text(max_size=40))
def test_the_script_never_fails(client: TestClient, query: str, cookie: str) -> None:
    response = client.get("/v1/revsync.js", params={"site": query}, headers={"cookie": "_rsid=" + cookie.encode("ascii", "replace").decode()})
    assert response.status_code in (200, 404)


