"""The GA4 Measurement Protocol emulator, driven with plain httpx POSTs."""

from __future__ import annotations

import copy
import hashlib
import ssl
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.emulators.ga4_mp import GA4MPEmulator
from tests.emulators.tls import make_tls_files

MEASUREMENT_ID = "G-TEST123"
SECRET = "s3cr3t-api"
NOW = 1_795_000_000
NOW_MICROS = NOW * 1_000_000
HOUR_MICROS = 3600 * 1_000_000
CREDENTIALS = {"measurement_id": MEASUREMENT_ID, "api_secret": SECRET}


@pytest.fixture
def ga4() -> Iterator[GA4MPEmulator]:
    with GA4MPEmulator(streams={MEASUREMENT_ID: SECRET}) as emulator:
        emulator.set_time(NOW)
        yield emulator
        assert emulator.internal_errors == []


def payload(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "client_id": "1234567890.1700000000",
        "user_id": "crm-contact-42",
        "timestamp_micros": NOW_MICROS - 2 * HOUR_MICROS,
        "consent": {"ad_user_data": "GRANTED", "ad_personalization": "DENIED"},
        "user_data": {"sha256_email_address": [hashlib.sha256(b"jane@example.com").hexdigest()]},
        "events": [{"name": "close_convert_lead", "params": {
            "value": 1250.5, "currency": "EUR", "transaction_id": "deal-1",
        }}],
    }
    body.update(changes)
    return body


def debug(ga4: GA4MPEmulator, body: Any, **query: str) -> list[dict[str, str]]:
    response = httpx.post(f"{ga4.url}/debug/mp/collect", params={**CREDENTIALS, **query},
                          json=body)
    assert response.status_code == 200
    messages: list[dict[str, str]] = response.json()["validationMessages"]
    return messages


def collect(ga4: GA4MPEmulator, body: Any, **query: str) -> httpx.Response:
    return httpx.post(f"{ga4.url}/mp/collect", params={**CREDENTIALS, **query}, json=body)


def test_valid_payload_is_clean_on_debug_and_recorded_on_production(ga4: GA4MPEmulator) -> None:
    assert debug(ga4, payload()) == []
    assert ga4.events == []  # the validation server records nothing

    response = collect(ga4, payload())

    assert response.status_code == 204
    assert response.content == b""
    [event] = ga4.events
    assert (event.measurement_id, event.client_id, event.name) == (
        MEASUREMENT_ID, "1234567890.1700000000", "close_convert_lead")
    assert event.params["value"] == 1250.5
    assert event.payload["consent"]["ad_user_data"] == "GRANTED"
    assert ga4.invalid == []
    assert ga4.calls == 2


def test_production_answers_2xx_to_junk_and_records_it_as_invalid(ga4: GA4MPEmulator) -> None:
    responses = [
        httpx.post(f"{ga4.url}/mp/collect", params=CREDENTIALS, content=b"not json"),
        collect(ga4, payload(), api_secret="wrong"),
        collect(ga4, payload(), measurement_id="G-UNKNOWN"),
        collect(ga4, payload(client_id=None, events=[{"name": "session_start"}])),
    ]

    assert [r.status_code for r in responses] == [204, 204, 204, 204]
    assert ga4.events == []
    assert len(ga4.invalid) == 4
    assert ga4.invalid[1].messages[0].field_path == "api_secret"
    assert {m.validation_code for m in ga4.invalid[3].messages} == {
        "VALUE_REQUIRED", "NAME_RESERVED"}


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """A mutation of the payload at a dotted path (list indexes as digits)."""
    def apply(body: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target: Any = body
        for part in parents:
            target = target[int(part)] if part.isdigit() else target[part]
        if value is None:
            del target[last]
        else:
            target[last] = value
    return apply


def _params(count: int) -> dict[str, Any]:
    return {f"p{i}": i for i in range(count)}


@pytest.mark.parametrize(
    ("mutate", "field_path", "code"),
    [
        (_set("client_id", None), "client_id", "VALUE_REQUIRED"),
        (_set("client_id", "GA1.1.123.456"), "client_id", "VALUE_INVALID"),
        (_set("user_id", "x" * 257), "user_id", "VALUE_INVALID"),
        (_set("events", []), "events", "VALUE_REQUIRED"),
        (_set("events", [{"name": "generate_lead"}] * 26), "events", "EXCEEDED_MAX_ENTITIES"),
        (_set("events.0.name", "a" * 41), "events", "VALUE_OUT_OF_BOUNDS"),
        (_set("events.0.name", "_close"), "events", "NAME_INVALID"),
        (_set("events.0.name", "close-lead"), "events", "NAME_INVALID"),
        (_set("events.0.name", "session_start"), "events", "NAME_RESERVED"),
        (_set("events.0.name", "first_visit"), "events", "NAME_RESERVED"),
        (_set("events.0.name", "user_engagement"), "events", "NAME_RESERVED"),
        (_set("events.0.name", "ad_click"), "events", "NAME_RESERVED"),
        (_set("events.0.name", "app_remove"), "events", "NAME_RESERVED"),
        (_set("events.0.name", "google_lead"), "events", "NAME_RESERVED"),
        (_set("events.0.name", "ga_lead"), "events", "NAME_RESERVED"),
        (_set("events.0.name", "firebase_lead"), "events", "NAME_RESERVED"),
        (_set("events.0.params", _params(26)), "events[0].params", "EXCEEDED_MAX_ENTITIES"),
        (_set("events.0.params.p" + "x" * 40, 1), "events[0].params.p" + "x" * 40,
         "VALUE_OUT_OF_BOUNDS"),
        (_set("events.0.params.1st", 1), "events[0].params.1st", "NAME_INVALID"),
        (_set("events.0.params.ga_source", "x"), "events[0].params.ga_source", "NAME_RESERVED"),
        (_set("events.0.params.stage", "x" * 101), "events[0].params.stage",
         "VALUE_OUT_OF_BOUNDS"),
        (_set("events.0.params.currency", None), "events[0].params.currency",
         "VALUE_REQUIRED"),
        (_set("events.0.params.currency", "eur"), "events[0].params.currency", "VALUE_INVALID"),
        (_set("events.0.params.value", "1250.50"), "events[0].params.value", "VALUE_INVALID"),
        (_set("timestamp_micros", NOW_MICROS - 73 * HOUR_MICROS), "timestamp_micros",
         "VALUE_OUT_OF_BOUNDS"),
        (_set("timestamp_micros", NOW_MICROS + 1_000_000), "timestamp_micros",
         "VALUE_OUT_OF_BOUNDS"),
        (_set("timestamp_micros", 1.5), "timestamp_micros", "VALUE_INVALID"),
        (_set("events.0.timestamp_micros", NOW_MICROS - 80 * HOUR_MICROS),
         "events[0].timestamp_micros", "VALUE_OUT_OF_BOUNDS"),
        (_set("consent.ad_user_data", "YES"), "consent.ad_user_data", "VALUE_INVALID"),
        (_set("consent.analytics", "GRANTED"), "consent.analytics", "NAME_INVALID"),
        (_set("user_data.sha256_email_address", ["jane@example.com"]),
         "user_data.sha256_email_address", "VALUE_INVALID"),
        (_set("user_data.sha256_phone_number", "a" * 64), "user_data.sha256_phone_number",
         "VALUE_INVALID"),
    ],
)
def test_debug_reports_each_rule(
    ga4: GA4MPEmulator, mutate: Callable[[dict[str, Any]], None], field_path: str, code: str
) -> None:
    body = copy.deepcopy(payload())
    mutate(body)

    messages = debug(ga4, body)

    assert [(m["fieldPath"], m["validationCode"]) for m in messages] == [(field_path, code)]
    assert messages[0]["description"]


def test_debug_reports_body_size_and_unknown_measurement_id(ga4: GA4MPEmulator) -> None:
    big = payload(events=[{"name": "generate_lead", "params": {"note": "x" * 100}}] * 1300)
    [message] = debug(ga4, big)
    assert message["validationCode"] == "VALUE_OUT_OF_BOUNDS"

    [message] = debug(ga4, payload(), measurement_id="G-NOPE")
    assert (message["fieldPath"], message["validationCode"]) == ("measurement_id",
                                                                 "VALUE_INVALID")


def test_debug_ignores_the_api_secret_like_google_unless_asked(ga4: GA4MPEmulator) -> None:
    assert debug(ga4, payload(), api_secret="wrong") == []

    with GA4MPEmulator(streams={MEASUREMENT_ID: SECRET}, debug_checks_api_secret=True) as strict:
        strict.set_time(NOW)
        [message] = debug(strict, payload(), api_secret="wrong")
        assert (message["fieldPath"], message["validationCode"]) == ("api_secret",
                                                                     "VALUE_INVALID")


def test_backdating_limit_follows_the_emulator_clock(ga4: GA4MPEmulator) -> None:
    body = payload(timestamp_micros=NOW_MICROS - 71 * HOUR_MICROS)
    assert debug(ga4, body) == []

    ga4.advance(2 * 3600)
    assert [m["fieldPath"] for m in debug(ga4, body)] == ["timestamp_micros"]


def test_transaction_id_dedup_for_purchase_like_events(ga4: GA4MPEmulator) -> None:
    purchase = {"name": "purchase", "params": {"transaction_id": "deal-9", "value": 10,
                                               "currency": "USD"}}
    refund = {"name": "refund", "params": {"transaction_id": "deal-9"}}
    collect(ga4, payload(events=[purchase, refund]))
    collect(ga4, payload(events=[purchase, refund]))
    collect(ga4, payload())
    collect(ga4, payload())

    assert [e.name for e in ga4.events] == ["purchase", "refund", "refund",
                                            "close_convert_lead"]
    assert [e.name for e in ga4.duplicates] == ["purchase", "close_convert_lead"]


def test_injected_faults_then_recovery(ga4: GA4MPEmulator) -> None:
    ga4.fail_next(2, status=429, retry_after=3)
    ga4.fail_next(1, status=503)

    statuses = [collect(ga4, payload()) for _ in range(4)]

    assert [r.status_code for r in statuses] == [429, 429, 503, 204]
    assert statuses[0].headers["Retry-After"] == "3"
    assert "Retry-After" not in statuses[2].headers
    assert len(ga4.events) == 1
    assert ga4.calls == 4


def test_unknown_route_and_chunked_upload(ga4: GA4MPEmulator) -> None:
    assert httpx.get(f"{ga4.url}/mp/collect").status_code == 404

    body = httpx.Request("POST", "/", json=payload()).content
    response = httpx.post(f"{ga4.url}/mp/collect", params=CREDENTIALS,
                          content=iter([body[:10], body[10:]]))

    assert response.status_code == 204
    assert ga4.log[-1].request.headers["transfer-encoding"] == "chunked"
    assert len(ga4.events) == 1


def test_serves_tls_when_given_certificates(tmp_path: Path) -> None:
    tls = make_tls_files(tmp_path)
    with GA4MPEmulator(streams={MEASUREMENT_ID: SECRET}, tls=tls) as ga4:
        assert ga4.url.startswith("https://127.0.0.1:")
        response = httpx.post(f"{ga4.url}/mp/collect", params=CREDENTIALS, json=payload(
            timestamp_micros=None), verify=ssl.create_default_context(cafile=tls.ca_cert))
        assert response.status_code == 204
        assert len(ga4.events) == 1
