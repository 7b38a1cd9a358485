"""GoogleAdsDestination through its real transports: google-ads over TLS gRPC and
google-ads-datamanager over REST, against the Google Ads, Data Manager and OAuth emulators."""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Iterator, Sequence
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

import grpc
import pytest

from revsync.config.destinations import GoogleAdsDestination as GoogleAdsConfig
from revsync.config.settings import Settings
from revsync.destinations.data_manager import (
    INGEST_EVENTS,
    DataManagerFileTransport,
    DataManagerTransport,
    ingest_bodies,
)
from revsync.destinations.files import FileTransport
from revsync.destinations.google_ads import GoogleAdsDestination
from revsync.destinations.google_ads_api import (
    GoogleAdsApiTransport,
    GoogleOAuth,
)
from revsync.destinations.pii import hash_person
from revsync.destinations.retry import RetryPolicy
from revsync.domain import (
    ClickIds,
    Consent,
    Contact,
    Conversion,
    ConversionKind,
    Credit,
    Deal,
    DealStatus,
    Journey,
    MatchLink,
    OutcomeStatus,
    Touchpoint,
    UploadOutcome,
)
from revsync.errors import ConfigError, PermanentError, TransientError
from revsync.sync.factory import _transport, google_transport
from tests.emulators.data_manager import DataManagerEmulator, EmulatorClock
from tests.emulators.google_ads import GoogleAdsEmulator
from tests.emulators.oauth import OAuthEmulator
from tests.emulators.tls import TlsFiles

CUSTOMER = "1234567890"
MANAGER = "9876543210"
ACTION, WEBPAGE_ACTION, MISSING_ACTION = "111", "222", "999"
NOW = dt.datetime(2026, 11, 16, 12, 0, tzinfo=dt.UTC)
DEV_TOKEN = "devtok-Zq81-secret"
CLIENT_ID = "revsync-client.apps.googleusercontent.com"
CLIENT_SECRET = "GOCSPX-client-secret-9f2"
REFRESH = "1//refresh-token-7c4e"
EMAIL = "Jane.Doe@example.com"
SECRETS = (DEV_TOKEN, CLIENT_SECRET, REFRESH, EMAIL, EMAIL.lower())
FAST = RetryPolicy(attempts=3, initial_wait=0.01, max_wait=0.02, jitter=0.01)
OAUTH = GoogleOAuth(CLIENT_ID, CLIENT_SECRET, REFRESH)


# --- fixtures ------------------------------------------------------------------------


@pytest.fixture
def oauth() -> Iterator[OAuthEmulator]:
    with OAuthEmulator(
        clients={CLIENT_ID: CLIENT_SECRET}, refresh_tokens={REFRESH: CLIENT_ID}
    ) as emulator:
        yield emulator


@pytest.fixture
def ads(tls: TlsFiles, oauth: OAuthEmulator) -> Iterator[GoogleAdsEmulator]:
    with GoogleAdsEmulator(tls, oauth, developer_tokens=(DEV_TOKEN,), now=NOW) as emulator:
        emulator.add_conversion_action(CUSTOMER, int(ACTION), "Closed won")
        emulator.add_conversion_action(CUSTOMER, int(WEBPAGE_ACTION), "Web", type="WEBPAGE")
        yield emulator


@pytest.fixture
def dm_emulator() -> Iterator[DataManagerEmulator]:
    with DataManagerEmulator(
        tokens=set(), refresh_tokens={REFRESH}, clock=EmulatorClock(NOW)
    ) as emulator:
        emulator.add_conversion_action(CUSTOMER, ACTION)
        yield emulator


def config(**fields: Any) -> GoogleAdsConfig:
    values: dict[str, Any] = {
        "name": "gads",
        "type": "google_ads",
        "customer_id": CUSTOMER,
        "login_customer_id": MANAGER,
        "conversion_action": ACTION,
        "conversion_actions_by_pipeline": {"web": WEBPAGE_ACTION, "gone": MISSING_ACTION},
        "enhanced_conversions": True,
        "timeout_seconds": 10,
    }
    return GoogleAdsConfig(**{**values, **fields})


def ads_destination(
    ads: GoogleAdsEmulator,
    oauth: OAuthEmulator,
    tls: TlsFiles,
    developer_token: str = DEV_TOKEN,
    refresh_token: str = REFRESH,
    **fields: Any,
) -> GoogleAdsDestination:
    block = config(
        transport="ads_api",
        endpoint=ads.endpoint,
        token_uri=oauth.token_url,
        ca_bundle=tls.ca_cert,
        **fields,
    )
    transport = GoogleAdsApiTransport(
        block,
        developer_token,
        GoogleOAuth(CLIENT_ID, CLIENT_SECRET, refresh_token),
        FAST,
        clock=lambda: NOW,
    )
    return GoogleAdsDestination(block, "last_touch", transport, clock=lambda: NOW)


def dm_destination(
    emulator: DataManagerEmulator, refresh_token: str = REFRESH, **fields: Any
) -> tuple[GoogleAdsDestination, DataManagerTransport]:
    block = config(
        transport="data_manager",
        data_manager_endpoint=f"http://{emulator.host}",
        token_uri=emulator.token_uri,
        **fields,
    )
    transport = DataManagerTransport(
        block, GoogleOAuth(CLIENT_ID, CLIENT_SECRET, refresh_token), FAST
    )
    return GoogleAdsDestination(block, "last_touch", transport, clock=lambda: NOW), transport


def planned(
    destination: GoogleAdsDestination,
    deal_id: str,
    click: str | None = None,
    clicked: dt.timedelta = dt.timedelta(days=10),
    closed: dt.timedelta = dt.timedelta(days=1),
    pipeline: str | None = None,
    currency: str = "EUR",
    email: str | None = None,
) -> Conversion:
    """Plan one won deal with one touchpoint through the destination's own rules."""
    touchpoint = Touchpoint(
        id=f"tp-{deal_id}",
        visitor_id=f"v-{deal_id}",
        occurred_at=NOW - clicked,
        channel="Paid Search",
        source="google",
        click_ids=ClickIds(gclid=click),
        consent=Consent(ad_user_data=True),
    )
    contacts = (Contact("c-1", hash_person(email, None)),) if email else ()
    links = tuple(MatchLink(touchpoint.visitor_id, "email", c.hashes.email or "") for c in contacts)
    deal = Deal(
        source="crm",
        id=deal_id,
        status=DealStatus.WON,
        amount=Decimal("1250.00"),
        currency=currency,
        close_at=NOW - closed,
        modified_at=NOW,
        pipeline=pipeline,
        contacts=contacts,
    )
    credit = Credit(touchpoint.id, Fraction(1), Decimal("1250.00"))
    [conversion] = destination.plan(Journey(deal, (touchpoint,), links), [credit], NOW).conversions
    return conversion


def send_all(
    destination: GoogleAdsDestination, conversions: Sequence[Conversion]
) -> dict[str, UploadOutcome]:
    """Send in ``batch_size`` batches, as the sync job does; outcomes by key."""
    outcomes: list[UploadOutcome] = []
    size = destination.batch_size
    for start in range(0, len(conversions), size):
        outcomes += destination.send(conversions[start : start + size])
    assert [o.key for o in outcomes] == [c.key for c in conversions]
    return {o.key: o for o in outcomes}


def verdicts(outcomes: dict[str, UploadOutcome]) -> list[tuple[OutcomeStatus, str | None]]:
    return [(o.status, o.code) for o in outcomes.values()]


# --- Google Ads API --------------------------------------------------------------------


def test_4500_conversions_take_exactly_three_requests(
    ads: GoogleAdsEmulator, oauth: OAuthEmulator, tls: TlsFiles
) -> None:
    destination = ads_destination(ads, oauth, tls)
    for i in range(4500):
        ads.add_click(f"gclid-{i}", NOW - dt.timedelta(days=10))
    conversions = [planned(destination, f"d{i}", f"gclid-{i}") for i in range(4500)]

    outcomes = send_all(destination, conversions)
    destination.close()

    assert ads.calls == {"UploadClickConversions": 3}
    assert set(verdicts(outcomes)) == {(OutcomeStatus.SENT, None)}
    assert len(ads.uploads) == 4500
    assert {u.order_id for u in ads.uploads} == set(outcomes)


def test_partial_failures_land_on_their_own_rows(
    ads: GoogleAdsEmulator, oauth: OAuthEmulator, tls: TlsFiles
) -> None:
    destination = ads_destination(ads, oauth, tls)
    ads.add_click("ok-1", NOW - dt.timedelta(days=10))
    ads.add_click("ok-2", NOW - dt.timedelta(days=3))
    ads.add_click("fresh", NOW - dt.timedelta(hours=2))
    ads.add_click("old", NOW - dt.timedelta(days=91))
    rows = [
        planned(destination, "good-1", "ok-1"),
        planned(destination, "unknown", "never-clicked"),
        planned(destination, "fresh", "fresh", dt.timedelta(hours=2), dt.timedelta(hours=1)),
        planned(destination, "web", "ok-1", pipeline="web"),
        planned(destination, "gone", "ok-1", pipeline="gone"),
        planned(destination, "old", "old", dt.timedelta(days=91), dt.timedelta(days=2)),
        planned(destination, "euro", "ok-2", currency="euro"),
        planned(destination, "good-2", "ok-2"),
    ]

    outcomes = destination.send(rows)

    assert [(o.key, o.status, o.code) for o in outcomes] == [
        (rows[0].key, OutcomeStatus.SENT, None),
        (rows[1].key, OutcomeStatus.REJECTED, "CLICK_NOT_FOUND"),
        (rows[2].key, OutcomeStatus.RETRY, "TOO_RECENT_EVENT"),
        (rows[3].key, OutcomeStatus.REJECTED, "INVALID_CONVERSION_ACTION_TYPE"),
        (rows[4].key, OutcomeStatus.REJECTED, "NO_CONVERSION_ACTION_FOUND"),
        (rows[5].key, OutcomeStatus.REJECTED, "EXPIRED_EVENT"),
        (rows[6].key, OutcomeStatus.REJECTED, "UNSUPPORTED"),
        (rows[7].key, OutcomeStatus.SENT, None),
    ]
    assert outcomes[2].retry_after == NOW + dt.timedelta(hours=6)
    assert outcomes[1].message and not outcomes[0].message
    assert {u.order_id for u in ads.uploads} == {rows[0].key, rows[7].key}


def test_resend_after_a_crash_comes_back_already_sent(
    ads: GoogleAdsEmulator, oauth: OAuthEmulator, tls: TlsFiles
) -> None:
    ads.add_click("ok-1", NOW - dt.timedelta(days=10))
    ads.add_click("ok-2", NOW - dt.timedelta(days=3))
    first = ads_destination(ads, oauth, tls)
    rows = [planned(first, "d1", "ok-1"), planned(first, "d2", "ok-2")]
    first.send(rows)  # the process dies before the ledger records these outcomes

    again = ads_destination(ads, oauth, tls)
    outcomes = again.send(rows)

    assert [(o.status, o.code) for o in outcomes] == [
        (OutcomeStatus.ALREADY_SENT, "ORDER_ID_ALREADY_IN_USE")
    ] * 2
    assert len(ads.uploads) == 2


def test_resource_exhausted_is_retried_then_succeeds(
    ads: GoogleAdsEmulator, oauth: OAuthEmulator, tls: TlsFiles
) -> None:
    ads.add_click("ok-1", NOW - dt.timedelta(days=10))
    destination = ads_destination(ads, oauth, tls)
    ads.fail_next(grpc.StatusCode.RESOURCE_EXHAUSTED, times=2)

    [outcome] = destination.send([planned(destination, "d1", "ok-1")])

    assert outcome.status is OutcomeStatus.SENT
    assert ads.calls == {"UploadClickConversions": 3}


def test_unavailable_past_the_attempt_budget_is_a_transient_error(
    ads: GoogleAdsEmulator, oauth: OAuthEmulator, tls: TlsFiles
) -> None:
    ads.add_click("ok-1", NOW - dt.timedelta(days=10))
    destination = ads_destination(ads, oauth, tls)
    ads.fail_next(grpc.StatusCode.UNAVAILABLE, times=FAST.attempts)

    with pytest.raises(TransientError, match="UNAVAILABLE"):
        destination.send([planned(destination, "d1", "ok-1")])

    assert ads.calls == {"UploadClickConversions": FAST.attempts}
    assert ads.uploads == []


def test_a_permanent_error_is_never_retried(
    ads: GoogleAdsEmulator, oauth: OAuthEmulator, tls: TlsFiles
) -> None:
    destination = ads_destination(ads, oauth, tls, developer_token="revoked-dev-token")

    with pytest.raises(PermanentError, match="DEVELOPER_TOKEN_INVALID") as raised:
        destination.send([planned(destination, "d1", "ok-1")])

    assert ads.calls == {"UploadClickConversions": 1}
    assert "revoked-dev-token" not in str(raised.value)


def test_not_allowlisted_token_is_told_to_use_data_manager(
    ads: GoogleAdsEmulator, oauth: OAuthEmulator, tls: TlsFiles
) -> None:
    ads.not_allowlisted_tokens.add(DEV_TOKEN)
    destination = ads_destination(ads, oauth, tls)

    with pytest.raises(PermanentError, match="transport: data_manager"):
        destination.send([planned(destination, "d1", "ok-1")])

    assert ads.calls == {"UploadClickConversions": 1}


def test_a_revoked_refresh_token_fails_before_any_api_call(
    ads: GoogleAdsEmulator, oauth: OAuthEmulator, tls: TlsFiles
) -> None:
    destination = ads_destination(ads, oauth, tls, refresh_token="1//revoked")

    with pytest.raises(PermanentError, match="REVSYNC_GOOGLE_OAUTH_REFRESH_TOKEN") as raised:
        destination.send([planned(destination, "d1", "ok-1")])

    assert "invalid_grant" in str(raised.value)
    assert "1//revoked" not in str(raised.value)
    assert ads.calls == {}


def test_an_expired_access_token_is_refreshed_once(
    ads: GoogleAdsEmulator, oauth: OAuthEmulator, tls: TlsFiles
) -> None:
    ads.add_click("ok-1", NOW - dt.timedelta(days=10))
    destination = ads_destination(ads, oauth, tls)
    destination.send([planned(destination, "d1", "ok-1")])
    oauth.expire_tokens()

    [outcome] = destination.send([planned(destination, "d2", "ok-1", closed=dt.timedelta(0))])

    assert outcome.status is OutcomeStatus.SENT
    assert ads.calls == {"UploadClickConversions": 3}
    assert len(oauth.issued) == 2


def test_restatement_and_retraction_adjustments(
    ads: GoogleAdsEmulator, oauth: OAuthEmulator, tls: TlsFiles
) -> None:
    ads.add_click("ok-1", NOW - dt.timedelta(days=10))
    destination = ads_destination(ads, oauth, tls)
    original = planned(destination, "d1", "ok-1")
    destination.send([original])

    def adjust(kind: ConversionKind, value: str, at: dt.datetime) -> UploadOutcome:
        adjustment = destination.adjustment(original, kind, Decimal(value), at)
        assert adjustment is not None
        [outcome] = destination.send([adjustment])
        return outcome

    early = adjust(ConversionKind.RESTATEMENT, "900", NOW)
    assert (early.status, early.code) == (OutcomeStatus.RETRY, "TOO_RECENT_CONVERSION")
    assert early.retry_after == NOW + dt.timedelta(hours=24)

    ads.now = later = NOW + dt.timedelta(days=2)
    assert adjust(ConversionKind.RESTATEMENT, "900", later).status is OutcomeStatus.SENT
    assert ads.uploads[0].value == 900.0
    again = adjust(ConversionKind.RESTATEMENT, "900", later)
    assert (again.status, again.code) == (OutcomeStatus.ALREADY_SENT, "RESTATEMENT_ALREADY_EXISTS")

    retract_at = later + dt.timedelta(minutes=5)
    ads.now = retract_at + dt.timedelta(minutes=1)  # Google's clock moves with revsync's
    assert adjust(ConversionKind.RETRACTION, "0", retract_at).status is OutcomeStatus.SENT
    assert ads.uploads[0].retracted
    twice = adjust(ConversionKind.RETRACTION, "0", retract_at)
    assert (twice.status, twice.code) == (
        OutcomeStatus.ALREADY_SENT,
        "CONVERSION_ALREADY_RETRACTED",
    )
    restate = adjust(ConversionKind.RESTATEMENT, "800", retract_at + dt.timedelta(minutes=1))
    assert (restate.status, restate.code) == (
        OutcomeStatus.REJECTED,
        "CONVERSION_ALREADY_RETRACTED",
    )
    assert [a.adjustment_type for a in ads.adjustments] == ["RESTATEMENT", "RETRACTION"]


def test_validate_only_is_never_reported_as_sent(
    ads: GoogleAdsEmulator, oauth: OAuthEmulator, tls: TlsFiles
) -> None:
    ads.add_click("ok-1", NOW - dt.timedelta(days=10))
    destination = ads_destination(ads, oauth, tls, validate_only=True)

    outcomes = destination.send(
        [planned(destination, "d1", "ok-1"), planned(destination, "d2", "nope")]
    )

    assert [(o.status, o.code) for o in outcomes] == [
        (OutcomeStatus.VALIDATED, "VALIDATED"),
        (OutcomeStatus.REJECTED, "CLICK_NOT_FOUND"),
    ]
    assert ads.uploads == []


# --- Data Manager API ------------------------------------------------------------------


def test_data_manager_ingests_and_reads_status_back(dm_emulator: DataManagerEmulator) -> None:
    destination, transport = dm_destination(dm_emulator)
    dm_emulator.add_click("ok-1", customer_id=CUSTOMER, at=NOW - dt.timedelta(days=10))
    rows = [
        planned(destination, "d1", "ok-1"),
        planned(destination, "d2", "never-clicked"),
        planned(destination, "d3", email=EMAIL),
    ]

    outcomes = destination.send(rows)

    assert {(o.status, o.code) for o in outcomes} == {(OutcomeStatus.SENT, "DM_ACCEPTED")}
    [request_id] = {o.request_id for o in outcomes}
    assert request_id
    [record] = dm_emulator.requests.values()
    [target] = record.request.destinations
    assert (target.operating_account.account_id, target.product_destination_id) == (
        CUSTOMER,
        ACTION,
    )
    assert target.login_account.account_id == MANAGER
    first = record.request.events[0]
    assert (first.transaction_id, first.ad_identifiers.gclid) == (rows[0].key, "ok-1")
    assert (first.conversion_value, first.currency) == (1250.0, "EUR")
    assert first.event_timestamp == NOW - dt.timedelta(days=1)
    assert first.consent.ad_user_data.name == "CONSENT_GRANTED"
    [identifier] = record.request.events[2].user_data.user_identifiers
    assert identifier.email_address == hash_person(EMAIL, None).email_google

    status = transport.check_status([request_id, "no-such-request"])
    destination.close()

    summary = status[request_id]
    assert (summary.state, summary.record_count) == ("PARTIAL_SUCCESS", 3)
    assert summary.errors == {"CLICK_NOT_FOUND": 1}
    assert status["no-such-request"].state == "INVALID_REQUEST_ID"
    assert dm_emulator.calls == {"Token": 1, "IngestEvents": 1, "RetrieveRequestStatus": 2}


def test_data_manager_resend_after_a_crash_stores_no_duplicate(
    dm_emulator: DataManagerEmulator,
) -> None:
    dm_emulator.add_click("ok-1", customer_id=CUSTOMER, at=NOW - dt.timedelta(days=10))
    destination, transport = dm_destination(dm_emulator)
    row = planned(destination, "d1", "ok-1")
    destination.send([row])  # the process dies before the ledger records this outcome

    [again] = destination.send([row])

    # No per-row answer exists: the duplicate shows only in the request status.
    assert (again.status, again.code) == (OutcomeStatus.SENT, "DM_ACCEPTED")
    assert [e.event.transaction_id for e in dm_emulator.events] == [row.key]
    request_id = again.request_id or ""
    status = transport.check_status([request_id])[request_id]
    assert (status.state, status.errors) == ("FAILED", {"DUPLICATE_TRANSACTION_ID": 1})


def test_data_manager_4500_conversions_take_exactly_three_requests(
    dm_emulator: DataManagerEmulator,
) -> None:
    destination, _ = dm_destination(dm_emulator)
    for i in range(4500):
        dm_emulator.add_click(f"g-{i}", customer_id=CUSTOMER, at=NOW - dt.timedelta(days=10))

    outcomes = send_all(destination, [planned(destination, f"d{i}", f"g-{i}") for i in range(4500)])

    assert dm_emulator.calls["IngestEvents"] == 3
    assert {o.code for o in outcomes.values()} == {"DM_ACCEPTED"}
    assert {e.event.transaction_id for e in dm_emulator.events} == set(outcomes)


def test_data_manager_field_violations_reject_their_rows_only(
    dm_emulator: DataManagerEmulator,
) -> None:
    destination, _ = dm_destination(dm_emulator)
    rows = [planned(destination, "d1", "ok-1"), planned(destination, "d2", "ok-1", currency="eu")]

    outcomes = destination.send(rows)

    assert [(o.status, o.code) for o in outcomes] == [
        (OutcomeStatus.RETRY, "DM_BATCH_REFUSED"),
        (OutcomeStatus.REJECTED, "INVALID_CURRENCY_CODE"),
    ]
    assert outcomes[1].message and "events.events[1].currency" in outcomes[1].message
    assert dm_emulator.requests == {}

    [gone, ok] = destination.send(
        [planned(destination, "d3", "ok-1", pipeline="gone"), planned(destination, "d4", "ok-1")]
    )
    assert (gone.status, gone.code) == (OutcomeStatus.REJECTED, "INVALID_CONVERSION_ACTION_ID")
    assert (ok.status, ok.code) == (OutcomeStatus.RETRY, "DM_BATCH_REFUSED")


def test_data_manager_retries_429_and_503_then_gives_up(dm_emulator: DataManagerEmulator) -> None:
    destination, _ = dm_destination(dm_emulator)
    dm_emulator.fail_next(429, times=1, rpc="IngestEvents")
    dm_emulator.fail_next(503, times=1, rpc="IngestEvents")

    [outcome] = destination.send([planned(destination, "d1", "ok-1")])

    assert outcome.code == "DM_ACCEPTED"
    assert dm_emulator.calls["IngestEvents"] == 3

    dm_emulator.fail_next(503, times=FAST.attempts, rpc="IngestEvents")
    with pytest.raises(TransientError, match="503"):
        destination.send([planned(destination, "d2", "ok-1")])
    assert dm_emulator.calls["IngestEvents"] == 3 + FAST.attempts


def test_data_manager_unauthorized_is_permanent(dm_emulator: DataManagerEmulator) -> None:
    dm_emulator.accept_issued_tokens = False
    destination, _ = dm_destination(dm_emulator)

    with pytest.raises(PermanentError, match="REVSYNC_GOOGLE_OAUTH_REFRESH_TOKEN"):
        destination.send([planned(destination, "d1", "ok-1")])

    assert dm_emulator.requests == {}


def test_data_manager_revoked_refresh_token_fails_before_any_api_call(
    dm_emulator: DataManagerEmulator,
) -> None:
    destination, _ = dm_destination(dm_emulator, refresh_token="1//revoked")

    with pytest.raises(PermanentError, match="REVSYNC_GOOGLE_OAUTH_REFRESH_TOKEN"):
        destination.send([planned(destination, "d1", "ok-1")])

    assert dm_emulator.calls == {"Token": 1}


def test_data_manager_rejects_adjustments_and_validates_without_storing(
    dm_emulator: DataManagerEmulator,
) -> None:
    destination, _ = dm_destination(dm_emulator, validate_only=True)
    original = planned(destination, "d1", "ok-1")
    retraction = destination.adjustment(original, ConversionKind.RETRACTION, Decimal(0), NOW)
    assert retraction is not None

    outcomes = destination.send([original, retraction])

    assert [(o.status, o.code) for o in outcomes] == [
        (OutcomeStatus.VALIDATED, "VALIDATED"),
        (OutcomeStatus.REJECTED, "DM_ADJUSTMENTS_UNSUPPORTED"),
    ]
    assert dm_emulator.requests == {}
    assert dm_emulator.calls["IngestEvents"] == 1


# --- transport: file, as Data Manager would send it -----------------------------------


def file_destination(tmp_path: Path, **fields: Any) -> GoogleAdsDestination:
    """A destination with the transport the factory builds for ``transport: file``."""
    block = config(transport="file", output_dir=tmp_path, **fields)
    transport = _transport(block, Settings())  # type: ignore[call-arg]
    return GoogleAdsDestination(block, "last_touch", transport, clock=lambda: NOW)


def file_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_data_manager_file_writes_exactly_what_the_wire_transport_sends(
    dm_emulator: DataManagerEmulator, tmp_path: Path
) -> None:
    pipelines = {f"p{i}": str(500 + i) for i in range(11)}  # 12 actions: two IngestEvents calls
    for action in pipelines.values():
        dm_emulator.add_conversion_action(CUSTOMER, action)
    fields: dict[str, Any] = {
        "conversion_actions_by_pipeline": pipelines,
        "custom_variables": {"77": "pipeline"},
    }
    wire, _ = dm_destination(dm_emulator, **fields)
    on_file = file_destination(tmp_path, file_format="data_manager", **fields)
    assert isinstance(on_file.transport, DataManagerFileTransport)
    batch = [planned(wire, f"d-{p}", f"gclid-{p}", pipeline=p) for p in pipelines]
    batch += [planned(wire, "d-mail", email=EMAIL), planned(wire, "d-usd", "g-usd", currency="USD")]

    file_outcomes = on_file.send(batch)
    wire_outcomes = wire.send(batch)
    on_file.close()
    wire.close()

    lines = file_lines(tmp_path / "gads.data_manager.jsonl")
    assert [line["endpoint"] for line in lines] == [INGEST_EVENTS, INGEST_EVENTS]
    assert [line["body"] for line in lines] == dm_emulator.wire_bodies
    assert len(dm_emulator.requests) == 2  # the emulator accepted both bodies
    [request] = on_file.build(batch)
    assert ingest_bodies(request, MANAGER) == dm_emulator.wire_bodies
    first = lines[0]["body"]
    assert first["encoding"] == 1 and "conversions" not in first  # IngestEvents, not Ads API
    assert first["destinations"][0]["loginAccount"]["accountId"] == MANAGER
    keys = [c.key for c in batch]
    assert [o.key for o in file_outcomes] == [o.key for o in wire_outcomes] == keys
    assert {o.status for o in file_outcomes} == {OutcomeStatus.SENT}


def test_data_manager_file_refuses_adjustments_as_the_wire_transport_does(
    tmp_path: Path,
) -> None:
    destination = file_destination(tmp_path, file_format="data_manager")
    original = planned(destination, "d1", "ok-1")
    retraction = destination.adjustment(original, ConversionKind.RETRACTION, Decimal(0), NOW)
    assert retraction is not None

    outcomes = destination.send([original, retraction])
    destination.close()

    assert [(o.status, o.code) for o in outcomes] == [
        (OutcomeStatus.SENT, None),
        (OutcomeStatus.REJECTED, "DM_ADJUSTMENTS_UNSUPPORTED"),
    ]
    [line] = file_lines(tmp_path / "gads.data_manager.jsonl")
    assert [e["transactionId"] for e in line["body"]["events"]] == [original.key]
    [adjustments] = destination.build([retraction])
    assert ingest_bodies(adjustments) == []


def test_file_format_defaults_to_the_ads_api_body(tmp_path: Path) -> None:
    destination = file_destination(tmp_path)
    assert type(destination.transport) is FileTransport

    destination.send([planned(destination, "d1", "ok-1")])
    destination.close()

    [line] = file_lines(tmp_path / "gads.google_ads.jsonl")
    assert line["endpoint"] == "ConversionUploadService/UploadClickConversions"
    assert line["body"]["conversions"][0]["gclid"] == "ok-1"
    assert not (tmp_path / "gads.data_manager.jsonl").exists()


# --- factory and secrets -------------------------------------------------------------


def test_factory_names_each_missing_credential() -> None:
    settings = Settings(google_oauth_client_id=CLIENT_ID)  # type: ignore[call-arg]

    with pytest.raises(ConfigError) as raised:
        _transport(config(transport="ads_api"), settings)
    assert raised.value.problems == [
        "destination 'gads': set REVSYNC_GOOGLE_OAUTH_CLIENT_SECRET",
        "destination 'gads': set REVSYNC_GOOGLE_OAUTH_REFRESH_TOKEN",
        "destination 'gads': set REVSYNC_GOOGLE_ADS_DEVELOPER_TOKEN",
    ]

    settings = Settings(  # type: ignore[call-arg]
        google_oauth_client_id=CLIENT_ID,
        google_oauth_client_secret=CLIENT_SECRET,
        google_oauth_refresh_token=REFRESH,
    )
    assert isinstance(_transport(config(transport="data_manager"), settings), DataManagerTransport)
    ads_settings = settings.model_copy(update={"google_ads_developer_token": DEV_TOKEN})
    transport = google_transport(config(transport="ads_api"), ads_settings)
    assert isinstance(transport, GoogleAdsApiTransport)
    assert DEV_TOKEN not in repr(transport.__dict__)


def test_no_secret_or_raw_email_in_logs_outcomes_or_errors(
    ads: GoogleAdsEmulator,
    oauth: OAuthEmulator,
    tls: TlsFiles,
    dm_emulator: DataManagerEmulator,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    ads.add_click("ok-1", NOW - dt.timedelta(days=10))
    texts: list[str] = []
    destination = ads_destination(ads, oauth, tls)
    dm, _ = dm_destination(dm_emulator)
    for target in (destination, dm):
        rows = [planned(target, "d1", "ok-1"), planned(target, "d2", email=EMAIL)]
        rows.append(planned(target, "d3", "bad click!"))
        texts += [f"{o.code} {o.message}" for o in target.send(rows)]
    ads.not_allowlisted_tokens.add(DEV_TOKEN)
    failing = [
        destination,
        ads_destination(ads, oauth, tls, refresh_token=REFRESH + "x"),
        dm_destination(dm_emulator, refresh_token=REFRESH + "x")[0],
    ]
    for target in failing:
        with pytest.raises(PermanentError) as raised:
            target.send([planned(target, "d9", "ok-1")])
        texts.append(str(raised.value))

    assert any("google.ads.googleads" in r.name for r in caplog.records)  # it did log
    assert "REDACTED" in caplog.text  # the developer-token header, masked by google-ads
    everything = caplog.text + "\n".join(texts)
    for secret in SECRETS:
        assert secret not in everything
