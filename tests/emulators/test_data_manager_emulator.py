"""The real google-ads-datamanager REST client against the Data Manager emulator."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from google.ads import datamanager_v1 as dm
from google.ads.datamanager_v1.services.ingestion_service.transports import (
    IngestionServiceRestTransport,
)
from google.api_core import exceptions, retry
from google.auth import exceptions as auth_exceptions
from google.auth.credentials import AnonymousCredentials, Credentials
from google.oauth2 import credentials as oauth2

from tests.emulators.data_manager import DataManagerEmulator, EmulatorClock

CUSTOMER = "1234567890"
ACTION = "987654321"
OTHER_ACTION = "987654322"
NOW = dt.datetime(2026, 11, 20, 12, 0, tzinfo=dt.UTC)
Status = dm.RequestStatusPerDestination.RequestStatus
Reason = dm.ProcessingErrorReason


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@pytest.fixture
def emulator() -> Iterator[DataManagerEmulator]:
    with DataManagerEmulator(
        tokens={"good-token"}, refresh_tokens={"good-refresh"}, clock=EmulatorClock(NOW)
    ) as emu:
        emu.add_conversion_action(CUSTOMER, ACTION)
        emu.add_conversion_action(CUSTOMER, OTHER_ACTION)
        emu.add_click("gclid-1", customer_id=CUSTOMER, at=NOW - dt.timedelta(days=3))
        yield emu


def make_client(
    emu: DataManagerEmulator, creds: Credentials | None = None
) -> dm.IngestionServiceClient:
    transport = IngestionServiceRestTransport(
        host=emu.host,
        url_scheme="http",
        credentials=creds or oauth2.Credentials(token="good-token"),
    )
    return dm.IngestionServiceClient(transport=transport)


def destination(action: str = ACTION, reference: str = "") -> dm.Destination:
    return dm.Destination(
        reference=reference,
        operating_account=dm.ProductAccount(
            account_type=dm.ProductAccount.AccountType.GOOGLE_ADS, account_id=CUSTOMER
        ),
        product_destination_id=action,
    )


def event(txn: str = "T-1", gclid: str = "gclid-1", **fields: object) -> dm.Event:
    values: dict[str, object] = {
        "transaction_id": txn,
        "event_timestamp": NOW - dt.timedelta(days=1),
        "ad_identifiers": dm.AdIdentifiers(gclid=gclid),
        "conversion_value": 1200.0,
        "currency": "EUR",
        "event_source": dm.EventSource.OTHER,
        "consent": dm.Consent(ad_user_data=dm.ConsentStatus.CONSENT_GRANTED),
        "user_data": dm.UserData(
            user_identifiers=[
                dm.UserIdentifier(email_address=sha256("jane@example.com")),
                dm.UserIdentifier(phone_number=sha256("+4915112345678")),
            ]
        ),
    }
    values.update(fields)
    return dm.Event(**values)


def ingest(client: dm.IngestionServiceClient, events: list[dm.Event], **kw: object) -> str:
    request = dm.IngestEventsRequest(
        destinations=kw.pop("destinations", [destination()]),
        events=events,
        encoding=dm.Encoding.HEX,
        **kw,
    )
    return client.ingest_events(request=request, timeout=5).request_id


def status(
    client: dm.IngestionServiceClient, request_id: str
) -> list[dm.RequestStatusPerDestination]:
    request = dm.RetrieveRequestStatusRequest(request_id=request_id)
    return list(
        client.retrieve_request_status(request=request, timeout=5).request_status_per_destination
    )


def error_counts(per_destination: dm.RequestStatusPerDestination) -> dict[str, int]:
    return {c.reason.name: c.record_count for c in per_destination.error_info.error_counts}


def violations(exc: exceptions.GoogleAPICallError) -> list[tuple[str, str]]:
    bad = next(d for d in exc.details if d["@type"].endswith("google.rpc.BadRequest"))
    return [(v["field"], v["reason"]) for v in bad["fieldViolations"]]


def test_ingest_then_status_reports_success(emulator: DataManagerEmulator) -> None:
    client = make_client(emulator)

    request_id = ingest(client, [event()])
    [result] = status(client, request_id)

    assert request_id
    assert result.request_status == Status.SUCCESS
    assert result.events_ingestion_status.record_count == 1
    assert result.destination.product_destination_id == ACTION
    assert "error_info" not in result
    [stored] = emulator.events
    assert (stored.customer_id, stored.conversion_action_id) == (CUSTOMER, ACTION)
    assert stored.event.transaction_id == "T-1"
    assert stored.event.conversion_value == 1200.0
    assert emulator.calls == {"IngestEvents": 1, "RetrieveRequestStatus": 1}


def refreshable(emu: DataManagerEmulator, refresh_token: str = "good-refresh") -> Credentials:
    return oauth2.Credentials(
        token=None,
        refresh_token=refresh_token,
        token_uri=emu.token_uri,
        client_id="client-id",
        client_secret="client-secret",
    )


def test_refresh_token_credentials_fetch_access_token_from_token_uri(
    emulator: DataManagerEmulator,
) -> None:
    assert ingest(make_client(emulator, refreshable(emulator)), [event()])
    assert emulator.calls == {"Token": 1, "IngestEvents": 1}


def test_rejected_token_is_refreshed_once_then_retried(emulator: DataManagerEmulator) -> None:
    creds = refreshable(emulator)
    creds.token = "stale-token"

    assert ingest(make_client(emulator, creds), [event()])
    assert emulator.calls == {"IngestEvents": 2, "Token": 1}


def test_unauthorized_once_refreshed_tokens_are_still_rejected(
    emulator: DataManagerEmulator,
) -> None:
    emulator.accept_issued_tokens = False

    with pytest.raises(exceptions.Unauthorized) as caught:
        ingest(make_client(emulator, refreshable(emulator)), [event()])

    assert caught.value.code == 401
    assert caught.value.reason == "ACCESS_TOKEN_EXPIRED"
    assert emulator.calls == {"Token": 3, "IngestEvents": 3}
    assert emulator.requests == {}


@pytest.mark.parametrize(
    ("creds", "error"),
    [
        (oauth2.Credentials(token="stale-token"), auth_exceptions.RefreshError),
        (AnonymousCredentials(), auth_exceptions.InvalidOperation),
    ],
)
def test_401_with_unrefreshable_credentials_raises_google_auth_errors(
    emulator: DataManagerEmulator, creds: Credentials, error: type[Exception]
) -> None:
    with pytest.raises(error):
        ingest(make_client(emulator, creds), [event()])
    assert emulator.calls == {"IngestEvents": 1}


def test_revoked_refresh_token_raises_refresh_error(emulator: DataManagerEmulator) -> None:
    with pytest.raises(auth_exceptions.RefreshError, match="invalid_grant"):
        ingest(make_client(emulator, refreshable(emulator, "revoked")), [event()])
    assert emulator.calls == {"Token": 1}


def test_invalid_fields_fail_the_whole_request(emulator: DataManagerEmulator) -> None:
    bad = event(
        txn="T-2",
        currency="euro",
        user_data=dm.UserData(
            user_identifiers=[dm.UserIdentifier(email_address="jane@example.com")]
        ),
    )

    with pytest.raises(exceptions.BadRequest) as caught:
        ingest(make_client(emulator), [event(), bad, event(txn="T-3", event_timestamp=None)])

    assert caught.value.reason == "INVALID_ARGUMENT"
    assert caught.value.domain == "datamanager.googleapis.com"
    assert violations(caught.value) == [
        ("events.events[1].user_data.user_identifiers[0]", "INVALID_HEX_ENCODING"),
        ("events.events[1].currency", "INVALID_CURRENCY_CODE"),
        ("events.events[2].event_timestamp", "REQUIRED_FIELD_MISSING"),
    ]
    assert emulator.requests == {}
    assert emulator.events == []


def test_identifier_rules(emulator: DataManagerEmulator) -> None:
    eleven = [dm.UserIdentifier(email_address=sha256(f"u{i}@example.com")) for i in range(11)]
    events = [
        event(txn="A", user_data=dm.UserData(user_identifiers=eleven)),
        event(
            txn="B",
            user_data=dm.UserData(user_identifiers=[dm.UserIdentifier(phone_number="ab" * 16)]),
        ),
        event(txn="C", ad_identifiers=dm.AdIdentifiers(gclid="g", wbraid="w")),
        event(txn="D", ad_identifiers=dm.AdIdentifiers(), user_data=dm.UserData()),
        event(txn="E", event_timestamp=NOW + dt.timedelta(hours=1)),
    ]

    with pytest.raises(exceptions.BadRequest) as caught:
        ingest(make_client(emulator), events)

    assert violations(caught.value) == [
        ("events.events[0].user_data.user_identifiers", "TOO_MANY_USER_IDENTIFIERS"),
        ("events.events[1].user_data.user_identifiers[0]", "INVALID_SHA256_FORMAT"),
        ("events.events[2].ad_identifiers", "INVALID_EVENT"),
        ("events.events[3]", "NO_IDENTIFIERS_PROVIDED"),
        ("events.events[4].event_timestamp", "EVENT_TIME_INVALID"),
    ]


def test_a_future_event_timestamp_refuses_the_whole_request(
    emulator: DataManagerEmulator,
) -> None:
    client = make_client(emulator)
    ahead = event(txn="T-ahead", event_timestamp=NOW + dt.timedelta(seconds=1))

    with pytest.raises(exceptions.BadRequest) as caught:
        ingest(client, [event(), ahead])

    assert violations(caught.value) == [("events.events[1].event_timestamp", "EVENT_TIME_INVALID")]
    assert emulator.requests == {}
    with pytest.raises(exceptions.BadRequest):  # validate_only judges it the same way
        ingest(client, [ahead], validate_only=True)


def test_the_future_is_measured_on_the_emulator_clock(emulator: DataManagerEmulator) -> None:
    client = make_client(emulator)
    assert ingest(client, [event(txn="T-now", event_timestamp=NOW)])
    later = event(txn="T-later", event_timestamp=NOW + dt.timedelta(minutes=5))
    with pytest.raises(exceptions.BadRequest):
        ingest(client, [later])

    emulator.clock.advance(dt.timedelta(minutes=5))
    assert ingest(client, [later])
    assert [e.event.transaction_id for e in emulator.events] == ["T-now", "T-later"]


def test_wire_bodies_keep_what_the_client_sent(emulator: DataManagerEmulator) -> None:
    ingest(make_client(emulator), [event()])

    [body] = emulator.wire_bodies
    assert body["encoding"] == int(dm.Encoding.HEX)  # the REST client sends enums as numbers
    assert body["destinations"][0]["productDestinationId"] == ACTION
    assert body["events"][0]["eventTimestamp"] == "2026-11-19T12:00:00Z"


def test_at_most_2000_events_per_request(emulator: DataManagerEmulator) -> None:
    client = make_client(emulator)
    events = [event(txn=f"T-{i}") for i in range(2001)]

    with pytest.raises(exceptions.BadRequest) as caught:
        ingest(client, events)
    assert violations(caught.value) == [("events", "TOO_MANY_EVENTS")]

    [result] = status(client, ingest(client, events[:2000]))
    assert result.events_ingestion_status.record_count == 2000


def test_destination_must_exist(emulator: DataManagerEmulator) -> None:
    client = make_client(emulator)

    with pytest.raises(exceptions.BadRequest) as caught:
        ingest(client, [event()], destinations=[destination(action="111")])
    assert violations(caught.value) == [
        ("destinations[0].product_destination_id", "INVALID_CONVERSION_ACTION_ID")
    ]

    stranger = destination()
    stranger.operating_account.account_id = "5555555555"
    with pytest.raises(exceptions.Forbidden):
        ingest(client, [event()], destinations=[stranger])

    dashed = destination()
    dashed.operating_account.account_id = "123-456-7890"
    with pytest.raises(exceptions.BadRequest) as caught:
        ingest(client, [event()], destinations=[dashed])
    assert violations(caught.value) == [
        ("destinations[0].operating_account.account_id", "INVALID_NUMBER_FORMAT")
    ]


def test_validate_only_checks_without_ingesting(emulator: DataManagerEmulator) -> None:
    client = make_client(emulator)

    assert ingest(client, [event()], validate_only=True) == ""
    with pytest.raises(exceptions.BadRequest):
        ingest(client, [event(currency="xx")], validate_only=True)
    assert emulator.requests == {}
    assert emulator.events == []


def test_outcomes_appear_only_after_asynchronous_processing(emulator: DataManagerEmulator) -> None:
    emulator.processing_delay = dt.timedelta(minutes=30)
    emulator.add_click("gclid-old", customer_id=CUSTOMER, at=NOW - dt.timedelta(days=95))
    emulator.add_click("gclid-late", customer_id=CUSTOMER, at=NOW - dt.timedelta(hours=1))
    emulator.add_click("gclid-elsewhere", customer_id="2222222222", at=NOW - dt.timedelta(days=2))
    emulator.add_click(
        "wbraid-1", customer_id=CUSTOMER, at=NOW - dt.timedelta(days=2), kind="wbraid"
    )
    denied = dm.Consent(ad_user_data=dm.ConsentStatus.CONSENT_DENIED)
    events = [
        event(txn="ok-1"),
        event(txn="ok-2", ad_identifiers=dm.AdIdentifiers(wbraid="wbraid-1")),
        event(txn="ok-1"),
        event(txn="unknown", gclid="gclid-nobody"),
        event(txn="old", gclid="gclid-old"),
        event(txn="before", gclid="gclid-late"),
        event(txn="elsewhere", gclid="gclid-elsewhere"),
        event(txn="garbled", gclid="not a gclid!"),
        event(txn="denied", consent=denied),
    ]
    client = make_client(emulator)
    request_id = ingest(client, events)

    [pending] = status(client, request_id)
    assert pending.request_status == Status.PROCESSING
    assert "error_info" not in pending
    assert emulator.events == []

    emulator.clock.advance(dt.timedelta(minutes=30))
    [done] = status(client, request_id)

    assert done.request_status == Status.PARTIAL_SUCCESS
    assert done.events_ingestion_status.record_count == 9
    assert error_counts(done) == {
        Reason.PROCESSING_ERROR_REASON_DUPLICATE_TRANSACTION_ID.name: 1,
        Reason.PROCESSING_ERROR_REASON_CLICK_NOT_FOUND.name: 1,
        Reason.PROCESSING_ERROR_REASON_EVENT_TOO_OLD.name: 1,
        Reason.PROCESSING_ERROR_REASON_CONVERSION_PRECEDES_CLICK.name: 1,
        Reason.PROCESSING_ERROR_REASON_INVALID_OPERATING_ACCOUNT_FOR_CLICK.name: 1,
        Reason.PROCESSING_ERROR_REASON_INVALID_GCLID.name: 1,
        Reason.PROCESSING_ERROR_REASON_DENIED_CONSENT.name: 1,
    }
    outcomes = emulator.requests[request_id].outcomes
    assert outcomes is not None
    assert [o.reason is None for o in outcomes] == [True, True] + [False] * 7
    assert [e.event.transaction_id for e in emulator.events] == ["ok-1", "ok-2"]


def test_status_per_destination_in_request_order(emulator: DataManagerEmulator) -> None:
    client = make_client(emulator)
    destinations = [destination(ACTION, "purchase"), destination(OTHER_ACTION, "qualified")]
    events = [
        event(txn="both"),
        event(txn="q-miss", gclid="gclid-nobody", destination_references=["qualified"]),
    ]

    first, second = status(client, ingest(client, events, destinations=destinations))

    assert (first.destination.reference, first.request_status) == ("purchase", Status.SUCCESS)
    assert first.events_ingestion_status.record_count == 1
    assert second.destination.reference == "qualified"
    assert second.request_status == Status.PARTIAL_SUCCESS
    assert second.events_ingestion_status.record_count == 2

    again = status(client, ingest(client, [event(txn="both")], destinations=destinations))
    assert [d.request_status for d in again] == [Status.FAILED, Status.FAILED]
    assert error_counts(again[0]) == {
        Reason.PROCESSING_ERROR_REASON_DUPLICATE_TRANSACTION_ID.name: 1
    }


def test_unknown_request_id_is_invalid(emulator: DataManagerEmulator) -> None:
    with pytest.raises(exceptions.BadRequest) as caught:
        status(make_client(emulator), "no-such-request")
    assert violations(caught.value) == [("request_id", "INVALID_REQUEST_ID")]


def test_injected_429_raises_too_many_requests(emulator: DataManagerEmulator) -> None:
    client = make_client(emulator)
    emulator.fail_next(429)

    with pytest.raises(exceptions.TooManyRequests) as caught:
        ingest(client, [event()])

    assert caught.value.code == 429
    assert ingest(client, [event()])
    assert emulator.calls["IngestEvents"] == 2
    assert len(emulator.requests) == 1


def test_rate_limit_per_minute_follows_the_clock(emulator: DataManagerEmulator) -> None:
    emulator.rate_limit_per_minute = 2
    client = make_client(emulator)
    ingest(client, [event(txn="1")])
    ingest(client, [event(txn="2")])

    with pytest.raises(exceptions.TooManyRequests):
        ingest(client, [event(txn="3")])

    emulator.clock.advance(dt.timedelta(minutes=1))
    assert ingest(client, [event(txn="3")])


def test_503_raises_unavailable_and_the_default_retry_predicate_retries_it(
    emulator: DataManagerEmulator,
) -> None:
    client = make_client(emulator)
    emulator.fail_next(503, rpc="IngestEvents")
    request = dm.IngestEventsRequest(
        destinations=[destination()], events=[event()], encoding=dm.Encoding.HEX
    )

    with pytest.raises(exceptions.ServiceUnavailable):
        client.ingest_events(request=request, retry=None, timeout=5)

    emulator.fail_next(503, rpc="IngestEvents")
    quick = retry.Retry(
        initial=0.01,
        maximum=0.01,
        predicate=retry.if_exception_type(exceptions.ServiceUnavailable),
        timeout=5,
    )
    assert client.ingest_events(request=request, retry=quick, timeout=5).request_id
    assert emulator.calls["IngestEvents"] == 3


def test_plain_http_with_enum_names_and_rfc3339_offsets(emulator: DataManagerEmulator) -> None:
    body = {
        "destinations": [
            {
                "operatingAccount": {"accountType": "GOOGLE_ADS", "accountId": CUSTOMER},
                "productDestinationId": ACTION,
            }
        ],
        "encoding": "HEX",
        "events": [
            {
                "transactionId": "T-9",
                "eventTimestamp": "2026-11-19T09:30:00-05:00",
                "adIdentifiers": {"gclid": "gclid-1"},
                "conversionValue": 10,
                "currency": "USD",
            }
        ],
    }

    def call(method: str, path: str, payload: dict[str, object] | None = None) -> dict[str, object]:
        request = urllib.request.Request(
            f"http://{emulator.host}{path}",
            data=json.dumps(payload).encode() if payload else None,
            headers={"Authorization": "Bearer good-token", "Content-Type": "application/json"},
            method=method,
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            return json.load(response)

    request_id = call("POST", "/v1/events:ingest", body)["requestId"]
    answer = call("GET", f"/v1/requestStatus:retrieve?requestId={request_id}")

    assert answer["requestStatusPerDestination"][0]["requestStatus"] == "SUCCESS"
    assert answer["requestStatusPerDestination"][0]["eventsIngestionStatus"] == {"recordCount": "1"}
    assert emulator.events[0].event.event_timestamp == dt.datetime(
        2026, 11, 19, 14, 30, tzinfo=dt.UTC
    )

    body["events"][0]["eventTimestamp"] = "2026-11-19 09:30:00-05:00"  # type: ignore[index]
    with pytest.raises(urllib.error.HTTPError) as caught:
        call("POST", "/v1/events:ingest", body)
    error = json.load(caught.value)["error"]
    assert (error["code"], error["status"]) == (400, "INVALID_ARGUMENT")


def test_rest_errors_map_by_http_status_not_to_grpc_named_subclasses(
    emulator: DataManagerEmulator,
) -> None:
    client = make_client(emulator)
    emulator.fail_next(429)
    raised = []
    for events in ([event()], [event(currency="xx")]):
        with pytest.raises(exceptions.GoogleAPICallError) as caught:
            ingest(client, events)
        raised.append(type(caught.value))

    assert raised == [exceptions.TooManyRequests, exceptions.BadRequest]
    assert not issubclass(exceptions.BadRequest, exceptions.InvalidArgument)
    assert not issubclass(exceptions.TooManyRequests, exceptions.ResourceExhausted)


def test_too_recent_click_is_opt_in_and_judged_at_processing_time(
    emulator: DataManagerEmulator,
) -> None:
    emulator.too_recent_click = dt.timedelta(hours=6)
    emulator.add_click("gclid-fresh", customer_id=CUSTOMER, at=NOW - dt.timedelta(hours=1))
    client = make_client(emulator)
    fresh = event(txn="fresh", gclid="gclid-fresh", event_timestamp=NOW - dt.timedelta(minutes=5))

    [first] = status(client, ingest(client, [fresh]))
    emulator.clock.advance(dt.timedelta(hours=5))
    [second] = status(client, ingest(client, [fresh]))

    assert error_counts(first) == {Reason.PROCESSING_ERROR_REASON_TOO_RECENT_CLICK.name: 1}
    assert second.request_status == Status.SUCCESS
