"""The Meta Graph emulator, driven by the real facebook-business SDK (and httpx for JSON)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator

import httpx
import pytest
import requests
from facebook_business.adobjects.serverside.action_source import ActionSource
from facebook_business.adobjects.serverside.custom_data import CustomData
from facebook_business.adobjects.serverside.event import Event
from facebook_business.adobjects.serverside.event_request import EventRequest
from facebook_business.adobjects.serverside.user_data import UserData
from facebook_business.api import FacebookAdsApi
from facebook_business.exceptions import FacebookRequestError
from facebook_business.session import FacebookSession

from tests.emulators.meta_graph import SUBCODE_EVENT_TOO_OLD, MetaGraphEmulator

TOKEN = "EAAB-test-token-3f9a"
PIXEL = "1234567890"
NOW = 1_795_000_000
FBC = "fb.1.1794999000000.IwAR2xYz_AbC-123"
HASHED_EMAIL = hashlib.sha256(b"jane@example.com").hexdigest()


@pytest.fixture
def meta(monkeypatch: pytest.MonkeyPatch) -> Iterator[MetaGraphEmulator]:
    with MetaGraphEmulator(tokens={TOKEN}, pixels={PIXEL}) as emulator:
        emulator.set_time(NOW)
        monkeypatch.setattr(FacebookSession, "GRAPH", emulator.url)
        monkeypatch.setattr(FacebookAdsApi, "_default_api", None)
        FacebookAdsApi.init(access_token=TOKEN, crash_log=False)
        yield emulator
        assert emulator.internal_errors == []


def event(
    event_id: str = "deal-1",
    *,
    age_seconds: int = 3600,
    user_data: UserData | None = None,
    custom_data: CustomData | None = None,
) -> Event:
    return Event(
        event_name="Purchase",
        event_time=NOW - age_seconds,
        event_id=event_id,
        action_source=ActionSource.SYSTEM_GENERATED,
        user_data=user_data or UserData(emails=["Jane@Example.com "], fbc=FBC),
        custom_data=custom_data or CustomData(value=1250.5, currency="EUR"),
    )


def send(*events: Event, test_event_code: str | None = None) -> dict[str, object]:
    response = EventRequest(pixel_id=PIXEL, events=list(events),
                            test_event_code=test_event_code).execute()
    return response.to_dict()


def rejected(*events: Event) -> FacebookRequestError:
    with pytest.raises(FacebookRequestError) as caught:
        send(*events)
    return caught.value


def test_sdk_upload_is_accepted_and_stored(meta: MetaGraphEmulator) -> None:
    result = send(event("deal-1"), event("deal-2"))

    assert result["events_received"] == 2
    assert result["messages"] == []
    assert result["fbtrace_id"]
    assert [e.data["event_id"] for e in meta.events] == ["deal-1", "deal-2"]
    stored = meta.events[0].data
    assert stored["user_data"] == {"em": [HASHED_EMAIL], "fbc": FBC}
    assert stored["custom_data"] == {"value": 1250.5, "currency": "eur"}
    assert stored["action_source"] == "system_generated"
    assert meta.events[0].pixel_id == PIXEL
    assert meta.calls == 1


def test_sync_sdk_wire_format_is_form_with_token_in_query(meta: MetaGraphEmulator) -> None:
    send(event())

    request = meta.log[0].request
    assert request.path == "/v26.0/1234567890/events"
    assert request.arg("access_token") == TOKEN
    assert request.content_type == "application/x-www-form-urlencoded"
    data = json.loads(request.form()["data"])
    assert isinstance(data[0], str)
    assert json.loads(data[0])["event_id"] == "deal-1"


def test_json_body_with_token_in_body_and_other_api_version(meta: MetaGraphEmulator) -> None:
    body = {
        "access_token": TOKEN,
        "data": [{
            "event_name": "Lead", "event_time": NOW, "action_source": "system_generated",
            "user_data": {"em": HASHED_EMAIL, "lead_id": "525645896321548"},
        }],
    }
    response = httpx.post(f"{meta.url}/v25.0/{PIXEL}/events", json=body)

    assert response.status_code == 200
    assert response.json()["events_received"] == 1
    assert meta.events[0].data["event_name"] == "Lead"


def test_bearer_token_header_is_accepted(meta: MetaGraphEmulator) -> None:
    body = {"data": [{"event_name": "Lead", "event_time": NOW, "action_source": "chat",
                      "user_data": {"external_id": HASHED_EMAIL}}]}
    response = httpx.post(f"{meta.url}/v26.0/{PIXEL}/events", json=body,
                          headers={"Authorization": f"Bearer {TOKEN}"})

    assert response.status_code == 200


def test_one_invalid_event_rejects_the_whole_batch(meta: MetaGraphEmulator) -> None:
    bad = event("deal-2", custom_data=CustomData(value=99.0))  # value without currency
    error = rejected(event("deal-1"), bad, event("deal-3"))

    assert error.http_status() == 400
    assert error.api_error_code() == 100
    assert error.api_error_type() == "OAuthException"
    assert "data[1]" in error.body()["error"]["error_user_msg"]
    assert "currency" in error.body()["error"]["error_user_msg"]
    assert meta.events == []


def test_an_event_older_than_seven_days_rejects_the_request(meta: MetaGraphEmulator) -> None:
    too_old = event("deal-old", age_seconds=7 * 86400 + 60)
    error = rejected(event("deal-new"), too_old)

    assert error.api_error_code() == 100
    assert error.api_error_subcode() == SUBCODE_EVENT_TOO_OLD
    assert "deal-old" in error.body()["error"]["error_user_msg"]
    assert meta.events == []


def test_six_days_old_is_accepted_and_clock_moves_the_limit(meta: MetaGraphEmulator) -> None:
    assert send(event(age_seconds=6 * 86400))["events_received"] == 1

    meta.advance(2 * 86400)
    assert rejected(event("deal-2", age_seconds=6 * 86400)).api_error_subcode() == (
        SUBCODE_EVENT_TOO_OLD
    )


def test_event_time_in_the_future_rejects_the_whole_request(meta: MetaGraphEmulator) -> None:
    error = rejected(event("deal-1"), event("deal-2", age_seconds=-1))

    assert error.http_status() == 400
    assert error.api_error_code() == 100
    message = error.body()["error"]["error_user_msg"]
    assert "data[1]" in message and "deal-2" in message and "future" in message
    assert meta.events == []


def test_the_future_is_measured_on_the_emulator_clock(meta: MetaGraphEmulator) -> None:
    assert send(event("deal-now", age_seconds=0))["events_received"] == 1
    ahead = event("deal-ahead", age_seconds=-120)
    assert "future" in rejected(ahead).body()["error"]["error_user_msg"]

    meta.advance(120)
    assert send(ahead)["events_received"] == 1
    assert [e.data["event_id"] for e in meta.events] == ["deal-now", "deal-ahead"]


def test_a_future_tolerance_can_be_configured() -> None:
    with MetaGraphEmulator(tokens={TOKEN}, pixels={PIXEL}, max_future_seconds=300) as emulator:
        emulator.set_time(NOW)
        body = {"access_token": TOKEN, "data": [{
            "event_name": "Lead", "action_source": "system_generated",
            "user_data": {"em": HASHED_EMAIL}, "event_time": NOW + 300,
        }]}
        url = f"{emulator.url}/v26.0/{PIXEL}/events"
        assert httpx.post(url, json=body).status_code == 200
        body["data"][0]["event_time"] = NOW + 301  # type: ignore[index]
        assert httpx.post(url, json=body).status_code == 400


@pytest.mark.parametrize(
    ("user_data", "complaint"),
    [
        (UserData(external_ids=["jane@example.com"]), "external_id must be SHA-256"),
        (UserData(emails=[HASHED_EMAIL], fbc=hashlib.sha256(FBC.encode()).hexdigest()),
         "fbc must not be hashed"),
        (UserData(emails=[HASHED_EMAIL], fbc="IwAR2xYz"), "fbc 'IwAR2xYz' is malformed"),
        (UserData(emails=[HASHED_EMAIL], fbp="fb.1.17.x"), "fbp 'fb.1.17.x' is malformed"),
        (UserData(client_ip_address=None), "at least one customer information"),
    ],
)
def test_user_data_rules_reject_the_batch(
    meta: MetaGraphEmulator, user_data: UserData, complaint: str
) -> None:
    error = rejected(event("deal-1"), event("deal-2", user_data=user_data))

    assert error.api_error_code() == 100
    assert complaint in error.body()["error"]["error_user_msg"]
    assert meta.events == []


@pytest.mark.parametrize("key", ["em", "ph", "fn", "zp"])
def test_raw_pii_in_json_body_rejects_the_batch(meta: MetaGraphEmulator, key: str) -> None:
    good = {"event_name": "Purchase", "event_time": NOW, "action_source": "system_generated",
            "user_data": {"em": [HASHED_EMAIL]}}
    raw = {**good, "user_data": {key: ["Jane@Example.com"]}}
    response = httpx.post(f"{meta.url}/v26.0/{PIXEL}/events",
                          params={"access_token": TOKEN}, json={"data": [good, raw]})

    assert response.status_code == 400
    assert response.json()["error"]["code"] == 100
    assert f"user_data.{key} must be SHA-256" in response.json()["error"]["error_user_msg"]
    assert meta.events == []


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        ({"action_source": None}, "action_source is required"),
        ({"action_source": "crm"}, "action_source 'crm' is not valid"),
        ({"event_name": ""}, "event_name is required"),
        ({"event_time": "1795000000"}, "event_time must be an integer"),
        ({"user_data": None}, "user_data is required"),
        ({"custom_data": {"value": "12", "currency": "USD"}}, "value must be a number"),
        ({"action_source": "website"}, "event_source_url is required"),
    ],
)
def test_event_field_rules(meta: MetaGraphEmulator, change: dict[str, object],
                           complaint: str) -> None:
    base = {"event_name": "Purchase", "event_time": NOW, "action_source": "system_generated",
            "user_data": {"em": [HASHED_EMAIL]}}
    payload = {k: v for k, v in {**base, **change}.items() if v is not None}
    response = httpx.post(f"{meta.url}/v26.0/{PIXEL}/events",
                          data={"access_token": TOKEN, "data": json.dumps([payload])})

    assert response.status_code == 400
    assert complaint in response.json()["error"]["error_user_msg"]


def test_more_than_1000_events_is_rejected(meta: MetaGraphEmulator) -> None:
    events = [event(f"deal-{i}", user_data=UserData(emails=[HASHED_EMAIL])) for i in range(1001)]

    error = rejected(*events)

    assert error.api_error_code() == 100
    assert "1001" in error.body()["error"]["error_user_msg"]
    assert send(*events[:1000])["events_received"] == 1000


def test_bad_token_raises_without_echoing_the_token(meta: MetaGraphEmulator) -> None:
    secret = "EAAB-wrong-token-77c1"
    FacebookAdsApi.init(access_token=secret, crash_log=False)

    error = rejected(event())

    assert error.http_status() == 400
    assert error.api_error_code() == 190
    assert error.api_error_type() == "OAuthException"
    assert "invalid_token" in error.http_headers()["WWW-Authenticate"]
    observable = [str(error), repr(error.request_context()), json.dumps(error.body()),
                  str(error.http_headers())]
    assert not any(secret in text for text in observable)
    assert meta.log[0].request.arg("access_token") == secret  # it was sent in the URL


def test_transport_errors_from_the_sdk_do_leak_the_token(meta: MetaGraphEmulator) -> None:
    url = meta.url
    meta.stop()
    with pytest.raises(requests.ConnectionError) as caught:
        send(event())
    assert f"access_token={TOKEN}" in str(caught.value)
    assert url.rsplit(":", 1)[1] in str(caught.value)


def test_expired_and_missing_tokens(meta: MetaGraphEmulator) -> None:
    meta.expire_token(TOKEN)
    error = rejected(event())
    assert (error.api_error_code(), error.api_error_subcode()) == (190, 463)

    response = httpx.post(f"{meta.url}/v26.0/{PIXEL}/events", data={"data": "[]"})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == 104


def test_unknown_pixel_is_code_100(meta: MetaGraphEmulator) -> None:
    with pytest.raises(FacebookRequestError) as caught:
        EventRequest(pixel_id="999", events=[event()]).execute()

    assert caught.value.api_error_code() == 100
    assert caught.value.api_error_subcode() == 33
    assert caught.value.api_error_type() == "GraphMethodException"


@pytest.mark.parametrize("code", [4, 17, 32, 613])
def test_throttling_is_flagged_transient_then_recovers(meta: MetaGraphEmulator,
                                                       code: int) -> None:
    meta.throttle_next(1, code=code)

    error = rejected(event())
    assert error.http_status() == 400
    assert error.api_error_code() == code
    assert error.api_transient_error() is True
    assert meta.events == []

    assert send(event())["events_received"] == 1
    assert meta.calls == 2


def test_injected_server_errors(meta: MetaGraphEmulator) -> None:
    meta.fail_next(2, status=500)

    for _ in range(2):
        error = rejected(event())
        assert error.http_status() == 500
        assert error.api_transient_error() is True
    assert send(event())["events_received"] == 1
    assert [x.response.status for x in meta.log] == [500, 500, 200]


def test_event_id_dedup_within_48_hours(meta: MetaGraphEmulator) -> None:
    assert send(event("deal-1"))["events_received"] == 1
    meta.advance(47 * 3600)
    assert send(event("deal-1", age_seconds=60))["events_received"] == 1  # still "received"

    assert len(meta.events) == 1
    assert len(meta.duplicates) == 1

    meta.advance(2 * 3600)
    send(event("deal-1", age_seconds=60))
    assert len(meta.events) == 2


def test_test_event_code_goes_to_test_events(meta: MetaGraphEmulator) -> None:
    send(event("deal-1"), test_event_code="TEST123")

    assert meta.events == []
    assert [e.test_event_code for e in meta.test_events] == ["TEST123"]
    assert meta.log[0].request.form()["test_event_code"] == "TEST123"
