"""The real google-ads client against the Google Ads and OAuth emulators, over TLS."""

from __future__ import annotations

import base64
import datetime as dt
import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from google.ads.googleads.client import GoogleAdsClient
from google.ads.googleads.errors import GoogleAdsException
from google.api_core import exceptions as core_exceptions
from google.api_core import grpc_helpers
from google.auth import crypt, jwt
from google.auth.transport.requests import Request
from google.oauth2 import service_account
from google.oauth2.credentials import Credentials

from tests.emulators.google_ads import DEFAULT_VERSION, GoogleAdsEmulator
from tests.emulators.oauth import JWT_BEARER, OAuthEmulator, TokenStatus
from tests.emulators.tls import TlsFiles

CUSTOMER = "1234567890"
NOW = dt.datetime(2026, 11, 16, 12, 0, tzinfo=dt.UTC)
GCLID = "Cj0KCQiA-ok_10days"
GBRAID = "0AAAAA-ok-5days"
GCLID_OLD = "Cj0KCQiA-100days"
GCLID_NEW = "Cj0KCQiA-2hours"
TIMEOUT = 10.0


def stamp(moment: dt.datetime) -> str:
    """Format a time as the API wants it: ``yyyy-mm-dd hh:mm:ss+hh:mm``."""
    return moment.strftime("%Y-%m-%d %H:%M:%S%z")[:-2] + ":" + moment.strftime("%z")[-2:]


@pytest.fixture
def oauth() -> Iterator[OAuthEmulator]:
    with OAuthEmulator() as emulator:
        yield emulator


@pytest.fixture
def ads(tls: TlsFiles, oauth: OAuthEmulator) -> Iterator[GoogleAdsEmulator]:
    with GoogleAdsEmulator(tls, oauth, now=NOW) as emulator:
        emulator.add_conversion_action(CUSTOMER, 111, "Closed won")
        emulator.add_conversion_action(CUSTOMER, 222, "Website purchase", type="WEBPAGE")
        emulator.add_conversion_action(CUSTOMER, 333, "Old import", status="REMOVED")
        emulator.add_conversion_action(
            CUSTOMER, 444, "Short window", click_through_lookback_window_days=7
        )
        emulator.add_click(GCLID, NOW - dt.timedelta(days=10))
        emulator.add_click(GBRAID, NOW - dt.timedelta(days=5))
        emulator.add_click(GCLID_OLD, NOW - dt.timedelta(days=100))
        emulator.add_click(GCLID_NEW, NOW - dt.timedelta(hours=2))
        yield emulator


@pytest.fixture(autouse=True)
def trust_test_ca(tls: TlsFiles, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every channel the client opens trust the throwaway CA.

    The generated transports call ``google.api_core.grpc_helpers.create_channel`` through
    the module attribute, so wrapping it to pass ``ssl_credentials`` is enough.
    """
    create_channel = grpc_helpers.create_channel

    def trusting(*args: Any, **kwargs: Any) -> grpc.Channel:
        kwargs.setdefault("ssl_credentials", grpc.ssl_channel_credentials(tls.ca_pem))
        return create_channel(*args, **kwargs)

    monkeypatch.setattr(grpc_helpers, "create_channel", trusting)


def make_client(
    ads: GoogleAdsEmulator,
    credentials: Credentials,
    developer_token: str = "test-dev-token",
    version: str = DEFAULT_VERSION,
    login_customer_id: str = "9876543210",
) -> GoogleAdsClient:
    return GoogleAdsClient(
        credentials=credentials,
        developer_token=developer_token,
        login_customer_id=login_customer_id,
        endpoint=ads.endpoint,
        use_proto_plus=True,
        version=version,
    )


def user_credentials(oauth: OAuthEmulator, refresh_token: str = "test-refresh") -> Credentials:
    return Credentials(
        token=None,
        refresh_token=refresh_token,
        client_id="test-client",
        client_secret="test-secret",
        token_uri=oauth.token_url,
    )


@pytest.fixture
def client(ads: GoogleAdsEmulator, oauth: OAuthEmulator) -> GoogleAdsClient:
    return make_client(ads, user_credentials(oauth))


def action(action_id: int = 111) -> str:
    return f"customers/{CUSTOMER}/conversionActions/{action_id}"


def conversion(client: GoogleAdsClient, **fields: Any) -> Any:
    """A valid ClickConversion for GCLID one day ago, with ``fields`` overriding."""
    values: dict[str, Any] = {
        "gclid": GCLID,
        "conversion_action": action(),
        "conversion_date_time": stamp(NOW - dt.timedelta(days=1)),
        "conversion_value": 1250.0,
        "currency_code": "EUR",
        "order_id": "deal-1",
    }
    values.update(fields)
    row = client.get_type("ClickConversion")
    for name, value in values.items():
        if name == "user_identifiers":
            row.user_identifiers.extend(value)
        elif value is not None:
            setattr(row, name, value)
    return row


def email(client: GoogleAdsClient, digest: str = "a" * 64) -> Any:
    identifier = client.get_type("UserIdentifier")
    identifier.hashed_email = digest
    return identifier


def upload(
    client: GoogleAdsClient,
    rows: list[Any],
    *,
    partial_failure: bool = True,
    validate_only: bool = False,
) -> Any:
    request = client.get_type("UploadClickConversionsRequest")
    request.customer_id = CUSTOMER
    request.conversions.extend(rows)
    request.partial_failure = partial_failure
    request.validate_only = validate_only
    service = client.get_service("ConversionUploadService")
    return service.upload_click_conversions(request=request, timeout=TIMEOUT)


def adjust(client: GoogleAdsClient, rows: list[dict[str, Any]]) -> Any:
    request = client.get_type("UploadConversionAdjustmentsRequest")
    request.customer_id = CUSTOMER
    request.partial_failure = True
    for fields in rows:
        row = client.get_type("ConversionAdjustment")
        row.conversion_action = action()
        row.adjustment_date_time = stamp(NOW)
        for name, value in fields.items():
            if name == "adjusted_value":
                row.restatement_value.adjusted_value = value
            elif name == "gclid_date_time_pair":
                row.gclid_date_time_pair.gclid, row.gclid_date_time_pair.conversion_date_time = (
                    value
                )
            else:
                setattr(row, name, value)
        request.conversion_adjustments.append(row)
    service = client.get_service("ConversionAdjustmentUploadService")
    return service.upload_conversion_adjustments(request=request, timeout=TIMEOUT)


def error_name(error: Any) -> str:
    code = error.error_code
    return getattr(code, type(code).pb(code).WhichOneof("error_code")).name


def row_errors(client: GoogleAdsClient, response: Any) -> dict[int, str]:
    """Map each failing row's index to its error name, as a revsync destination would."""
    failure_type = type(client.get_type("GoogleAdsFailure"))
    errors = {}
    for detail in response.partial_failure_error.details:
        for error in failure_type.deserialize(detail.value).errors:
            errors[error.location.field_path_elements[0].index] = error_name(error)
    return errors


def whole_request_error(raised: pytest.ExceptionInfo[GoogleAdsException]) -> str:
    [error] = raised.value.failure.errors
    return error_name(error)


@pytest.mark.parametrize("version", sorted({"v23", DEFAULT_VERSION}))
def test_search_and_search_stream_list_seeded_conversion_actions(
    tls: TlsFiles, oauth: OAuthEmulator, version: str
) -> None:
    with GoogleAdsEmulator(tls, oauth, version=version) as ads:
        ads.add_conversion_action(CUSTOMER, 111, "Closed won")
        ads.add_conversion_action("5555555555", 333, "Other customer's action")
        client = make_client(ads, user_credentials(oauth), version=version)
        service = client.get_service("GoogleAdsService")
        query = (
            "SELECT conversion_action.id, conversion_action.name, conversion_action.type, "
            "conversion_action.status FROM conversion_action"
        )
        rows = list(service.search(customer_id=CUSTOMER, query=query, timeout=TIMEOUT))
        streamed = [
            row
            for batch in service.search_stream(customer_id=CUSTOMER, query=query, timeout=TIMEOUT)
            for row in batch.results
        ]
    assert [
        (
            r.conversion_action.id,
            r.conversion_action.name,
            r.conversion_action.type_.name,
            r.conversion_action.status.name,
        )
        for r in rows
    ] == [(111, "Closed won", "UPLOAD_CLICKS", "ENABLED")]
    assert streamed == rows
    assert ads.calls == {"Search": 1, "SearchStream": 1}


def search(client: GoogleAdsClient, query: str, customer_id: str = CUSTOMER) -> list[Any]:
    service = client.get_service("GoogleAdsService")
    return list(service.search(customer_id=customer_id, query=query, timeout=TIMEOUT))


@pytest.mark.parametrize(
    ("query", "customer_id", "expected"),
    [
        ("SELECT campaign.id FROM campaign", CUSTOMER, "BAD_RESOURCE_TYPE_IN_FROM_CLAUSE"),
        ("SELECT conversion_action.id", CUSTOMER, "EXPECTED_FROM"),
        (
            "SELECT conversion_action.id FROM conversion_action",
            "123-456-7890",
            "INVALID_CUSTOMER_ID",
        ),
    ],
)
def test_search_refuses_what_it_cannot_answer(
    client: GoogleAdsClient, query: str, customer_id: str, expected: str
) -> None:
    with pytest.raises(GoogleAdsException) as raised:
        search(client, query, customer_id)

    assert whole_request_error(raised) == expected
    assert raised.value.error.code() is grpc.StatusCode.INVALID_ARGUMENT


def test_mixed_batch_fails_only_the_bad_rows(
    client: GoogleAdsClient, ads: GoogleAdsEmulator
) -> None:
    third_party = client.get_type("UserIdentifier")
    third_party.third_party_user_id = "crm-contact-42"
    granted = client.get_type("Consent")
    granted.ad_user_data = "GRANTED"
    cases = [
        ({}, None),
        ({"gbraid": GBRAID, "order_id": "r1"}, "GBRAID_WBRAID_BOTH_SET"),
        ({"gclid": "not a gclid!", "order_id": "r2"}, "UNPARSEABLE_GCLID"),
        ({"gclid": "Cj0KCQiA-unknown", "order_id": "r3"}, "CLICK_NOT_FOUND"),
        ({"conversion_action": action(999), "order_id": "r4"}, "NO_CONVERSION_ACTION_FOUND"),
        ({"conversion_action": action(222), "order_id": "r5"}, "INVALID_CONVERSION_ACTION_TYPE"),
        (
            {"conversion_date_time": "2026-11-15 12:00:00", "order_id": "r6"},
            "INVALID_STRING_DATE_TIME_SECONDS_WITH_OFFSET",
        ),
        (
            {"conversion_date_time": "2026-02-30 12:00:00+00:00", "order_id": "r7"},
            "INVALID_FIELD_VALUES_IN_DATE_TIME",
        ),
        (
            {"conversion_date_time": stamp(NOW - dt.timedelta(days=11)), "order_id": "r8"},
            "CONVERSION_PRECEDES_EVENT",
        ),
        ({"gclid": GCLID_OLD, "order_id": "r9"}, "EXPIRED_EVENT"),
        (
            {
                "gclid": GCLID_NEW,
                "conversion_date_time": stamp(NOW - dt.timedelta(hours=1)),
                "order_id": "r10",
            },
            "TOO_RECENT_EVENT",
        ),
        ({"currency_code": "eur", "order_id": "r11"}, "UNSUPPORTED"),
        ({"order_id": "jane@example.com"}, "ORDER_ID_CONTAINS_PII"),
        ({"gclid": None, "gbraid": GBRAID}, "DUPLICATE_ORDER_ID"),
        ({"user_identifiers": [email(client)] * 6, "order_id": "r15"}, "TOO_MANY"),
        (
            {"user_identifiers": [email(client, "not-hashed")], "order_id": "r16"},
            "INVALID_USER_IDENTIFIER",
        ),
        ({"order_id": "r17"}, "DUPLICATE_CLICK_CONVERSION_IN_REQUEST"),
        (
            {
                "gclid": None,
                "gbraid": GBRAID,
                "order_id": "deal-2",
                "conversion_date_time": stamp(
                    (NOW - dt.timedelta(hours=30)).astimezone(dt.timezone(dt.timedelta(hours=-5)))
                ),
            },
            None,
        ),
        (
            {
                "gclid": None,
                "user_identifiers": [email(client)],
                "order_id": "deal-3",
                "consent": granted,
            },
            None,
        ),
        ({"gclid": None, "order_id": "r20"}, "REQUIRED"),
        ({"user_identifiers": [third_party], "order_id": "r21"}, "UNSUPPORTED_USER_IDENTIFIER"),
        ({"conversion_action": action(333), "order_id": "r22"}, "NO_CONVERSION_ACTION_FOUND"),
        ({"conversion_action": action(444), "order_id": "r23"}, "EXPIRED_EVENT"),
    ]
    rows = [conversion(client, **fields) for fields, _ in cases]

    response = upload(client, rows)

    expected = {i: name for i, (_, name) in enumerate(cases) if name is not None}
    assert row_errors(client, response) == expected
    assert response.partial_failure_error.code == 3
    assert response.job_id == 1
    assert [bool(r.conversion_action) for r in response.results] == [
        name is None for _, name in cases
    ]
    assert response.results[0].gclid == GCLID
    assert response.results[17].gbraid == GBRAID
    assert [(u.order_id, u.click_id, u.value) for u in ads.uploads] == [
        ("deal-1", GCLID, 1250.0),
        ("deal-2", GBRAID, 1250.0),
        ("deal-3", "", 1250.0),
    ]
    assert ads.uploads[1].conversion_time == NOW - dt.timedelta(hours=30)
    assert ads.uploads[2].user_identifiers == (("hashed_email", "a" * 64),)
    assert [u.ad_user_data for u in ads.uploads] == ["UNSPECIFIED", "UNSPECIFIED", "GRANTED"]


def test_second_run_is_rejected_by_order_id_and_click_time(client: GoogleAdsClient) -> None:
    assert not upload(client, [conversion(client)]).partial_failure_error.details

    again = upload(client, [conversion(client), conversion(client, order_id=None)])

    assert row_errors(client, again) == {
        0: "ORDER_ID_ALREADY_IN_USE",
        1: "CLICK_CONVERSION_ALREADY_EXISTS",
    }


def test_validate_only_checks_rows_but_stores_nothing(
    client: GoogleAdsClient, ads: GoogleAdsEmulator
) -> None:
    response = upload(
        client, [conversion(client), conversion(client, gclid="bad gclid")], validate_only=True
    )

    assert row_errors(client, response) == {1: "UNPARSEABLE_GCLID"}
    assert list(response.results) == []
    assert ads.uploads == []
    assert not upload(client, [conversion(client)]).partial_failure_error.details


def test_partial_failure_false_fails_the_whole_request(client: GoogleAdsClient) -> None:
    with pytest.raises(GoogleAdsException) as raised:
        upload(client, [conversion(client)], partial_failure=False)

    assert whole_request_error(raised) == "PARTIAL_FAILURE_MODE_REQUIRED"
    assert raised.value.error.code() is grpc.StatusCode.INVALID_ARGUMENT


def test_more_than_2000_conversions_fail_the_whole_request(
    client: GoogleAdsClient, ads: GoogleAdsEmulator
) -> None:
    day_ago = NOW - dt.timedelta(days=1)
    rows = [
        conversion(
            client,
            order_id=f"deal-{i}",
            conversion_date_time=stamp(day_ago + dt.timedelta(seconds=i)),
        )
        for i in range(2001)
    ]

    with pytest.raises(GoogleAdsException) as raised:
        upload(client, rows)

    assert whole_request_error(raised) == "TOO_MANY_CONVERSIONS_IN_REQUEST"
    assert raised.value.request_id
    assert ads.uploads == []
    assert not upload(client, rows[:2000]).partial_failure_error.details
    assert len(ads.uploads) == 2000


def test_injected_quota_and_outage_errors_then_recovery(
    client: GoogleAdsClient, ads: GoogleAdsEmulator
) -> None:
    ads.fail_next(grpc.StatusCode.RESOURCE_EXHAUSTED)
    ads.fail_next(grpc.StatusCode.UNAVAILABLE)

    with pytest.raises(core_exceptions.ResourceExhausted):
        upload(client, [conversion(client)])
    with pytest.raises(core_exceptions.ServiceUnavailable):
        upload(client, [conversion(client)])
    assert not upload(client, [conversion(client)]).partial_failure_error.details
    assert ads.calls["UploadClickConversions"] == 3


def test_not_allowlisted_developer_token_cannot_upload_but_can_search(
    ads: GoogleAdsEmulator, oauth: OAuthEmulator
) -> None:
    ads.developer_tokens.add("new-token")
    ads.not_allowlisted_tokens.add("new-token")
    client = make_client(ads, user_credentials(oauth), developer_token="new-token")

    with pytest.raises(GoogleAdsException) as raised:
        upload(client, [conversion(client)])

    assert whole_request_error(raised) == "CUSTOMER_NOT_ALLOWLISTED_FOR_THIS_FEATURE"
    assert raised.value.error.code() is grpc.StatusCode.PERMISSION_DENIED
    assert len(search(client, "SELECT conversion_action.id FROM conversion_action")) == 4


UNAUTHENTICATED = grpc.StatusCode.UNAUTHENTICATED
INVALID_ARGUMENT = grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.parametrize(
    ("bearer", "developer_token", "login_customer_id", "status", "expected"),
    [
        ("forged", "test-dev-token", "9876543210", UNAUTHENTICATED, "OAUTH_TOKEN_INVALID"),
        (None, "unknown-token", "9876543210", UNAUTHENTICATED, "DEVELOPER_TOKEN_INVALID"),
        (None, "", "9876543210", INVALID_ARGUMENT, "DEVELOPER_TOKEN_PARAMETER_MISSING"),
        (None, "test-dev-token", "987-654-3210", INVALID_ARGUMENT, "CLIENT_CUSTOMER_ID_INVALID"),
    ],
)
def test_bad_credentials_fail_the_whole_request(
    ads: GoogleAdsEmulator,
    oauth: OAuthEmulator,
    bearer: str | None,
    developer_token: str,
    login_customer_id: str,
    status: grpc.StatusCode,
    expected: str,
) -> None:
    credentials = Credentials(token=bearer) if bearer else user_credentials(oauth)
    client = make_client(
        ads, credentials, developer_token=developer_token, login_customer_id=login_customer_id
    )

    with pytest.raises(GoogleAdsException) as raised:
        upload(client, [conversion(client)])

    assert raised.value.error.code() is status
    assert whole_request_error(raised) == expected
    assert ads.uploads == []


def test_expired_token_is_refused_until_the_client_refreshes(
    client: GoogleAdsClient, ads: GoogleAdsEmulator, oauth: OAuthEmulator
) -> None:
    assert not upload(client, [conversion(client)]).partial_failure_error.details
    oauth.expire_tokens()

    with pytest.raises(GoogleAdsException) as raised:
        upload(client, [conversion(client, order_id="deal-2", gclid=None, gbraid=GBRAID)])
    assert whole_request_error(raised) == "OAUTH_TOKEN_EXPIRED"

    client.credentials.refresh(Request())
    assert not upload(
        client, [conversion(client, order_id="deal-2", gclid=None, gbraid=GBRAID)]
    ).partial_failure_error.details
    assert len(oauth.issued) == 2


def test_short_lived_tokens_are_refreshed_by_the_client(
    client: GoogleAdsClient, oauth: OAuthEmulator
) -> None:
    oauth.expires_in = 60  # inside google-auth's refresh threshold: stale at once

    for order_id in ("deal-1", "deal-2"):
        upload(client, [conversion(client, order_id=order_id, gclid=None, gbraid=GBRAID)])

    assert len(oauth.issued) == 2


def test_unknown_refresh_token_never_reaches_the_api(
    ads: GoogleAdsEmulator, oauth: OAuthEmulator
) -> None:
    client = make_client(ads, user_credentials(oauth, refresh_token="revoked"))

    with pytest.raises(core_exceptions.ServiceUnavailable) as raised:
        upload(client, [conversion(client)])

    assert "invalid_grant" in str(raised.value)
    assert oauth.issued == []


def test_adjustments_retract_and_restate_uploaded_conversions(
    client: GoogleAdsClient, ads: GoogleAdsEmulator
) -> None:
    at = NOW - dt.timedelta(days=1)
    upload(
        client,
        [
            conversion(client, order_id="deal-1"),
            conversion(client, order_id="deal-2", gclid=None, gbraid=GBRAID),
            conversion(
                client, order_id="deal-3", conversion_date_time=stamp(at - dt.timedelta(hours=1))
            ),
        ],
    )
    too_soon = adjust(client, [{"order_id": "deal-1", "adjustment_type": "RETRACTION"}])
    assert row_errors(client, too_soon) == {0: "TOO_RECENT_CONVERSION"}

    ads.now = NOW + dt.timedelta(hours=25)
    response = adjust(
        client,
        [
            {"order_id": "deal-1", "adjustment_type": "RETRACTION"},
            {"order_id": "deal-2", "adjustment_type": "RESTATEMENT", "adjusted_value": 900.0},
            {"order_id": "deal-404", "adjustment_type": "RETRACTION"},
            {"order_id": "deal-2", "adjustment_type": "RETRACTION"},
            {
                "order_id": "deal-3",
                "adjustment_type": "RESTATEMENT",
                "adjusted_value": 1.0,
                "adjustment_date_time": stamp(at - dt.timedelta(hours=2)),
            },
            {
                "order_id": "deal-3",
                "adjustment_type": "RESTATEMENT",
                "gclid_date_time_pair": (GCLID, stamp(at - dt.timedelta(hours=1))),
            },
            {
                "gclid_date_time_pair": (GCLID, stamp(at - dt.timedelta(hours=1))),
                "adjustment_type": "RESTATEMENT",
                "adjusted_value": 1100.0,
            },
        ],
    )
    assert row_errors(client, response) == {
        2: "CONVERSION_NOT_FOUND",
        3: "DUPLICATE_ADJUSTMENT_IN_REQUEST",
        4: "ADJUSTMENT_PRECEDES_CONVERSION",
        5: "GCLID_DATE_TIME_PAIR_AND_ORDER_ID_BOTH_SET",
    }
    assert response.results[1].order_id == "deal-2"
    assert response.results[1].adjustment_type.name == "RESTATEMENT"
    assert [(u.order_id, u.retracted, u.value) for u in ads.uploads] == [
        ("deal-1", True, 1250.0),
        ("deal-2", False, 900.0),
        ("deal-3", False, 1100.0),
    ]

    restate = {"order_id": "deal-2", "adjustment_type": "RESTATEMENT", "adjusted_value": 5.0}
    hour_ago = stamp(NOW - dt.timedelta(hours=1))
    later = [
        ({**restate, "order_id": "deal-1"}, "CONVERSION_ALREADY_RETRACTED"),
        ({**restate, "adjustment_date_time": hour_ago}, "MORE_RECENT_RESTATEMENT_FOUND"),
        (restate, "RESTATEMENT_ALREADY_EXISTS"),
        ({**restate, "conversion_action": action(222)}, "INVALID_CONVERSION_ACTION_TYPE"),
        (
            {**restate, "adjustment_type": "ENHANCEMENT"},
            "CONVERSION_ACTION_NOT_ELIGIBLE_FOR_ENHANCEMENT",
        ),
        ({"order_id": "deal-2", "adjustment_type": "RESTATEMENT"}, "REQUIRED"),
        (
            {**restate, "adjustment_date_time": "2026-11-16T12:00:00Z"},
            "INVALID_STRING_DATE_TIME_SECONDS_WITH_OFFSET",
        ),
    ]
    response = adjust(client, [fields for fields, _ in later])
    assert row_errors(client, response) == {i: name for i, (_, name) in enumerate(later)}

    ads.now = NOW + dt.timedelta(days=60)
    expired = adjust(client, [{"order_id": "deal-2", "adjustment_type": "RETRACTION"}])
    assert row_errors(client, expired) == {0: "CONVERSION_EXPIRED"}
    assert len(ads.adjustments) == 3


def test_a_click_conversion_dated_after_the_clock_is_refused(
    client: GoogleAdsClient, ads: GoogleAdsEmulator
) -> None:
    rows = [
        conversion(client, order_id="now", conversion_date_time=stamp(NOW)),
        conversion(
            client,
            order_id="ahead",
            gclid=None,
            gbraid=GBRAID,
            conversion_date_time=stamp(NOW + dt.timedelta(seconds=1)),
        ),
        conversion(  # the same instant in another offset is still in the future
            client,
            order_id="ahead-elsewhere",
            gclid=None,
            user_identifiers=[email(client)],
            conversion_date_time=stamp(
                (NOW + dt.timedelta(hours=1)).astimezone(dt.timezone(dt.timedelta(hours=-8)))
            ),
        ),
    ]

    response = upload(client, rows)

    assert row_errors(client, response) == {
        1: "LATER_THAN_MAXIMUM_DATE",
        2: "LATER_THAN_MAXIMUM_DATE",
    }
    failure = type(client.get_type("GoogleAdsFailure")).deserialize(
        response.partial_failure_error.details[0].value
    )
    assert [e.location.field_path_elements[1].field_name for e in failure.errors] == [
        "conversion_date_time",
        "conversion_date_time",
    ]
    assert [u.order_id for u in ads.uploads] == ["now"]

    ads.now = NOW + dt.timedelta(hours=1)
    assert not upload(client, rows[1:]).partial_failure_error.details
    assert [u.order_id for u in ads.uploads] == ["now", "ahead", "ahead-elsewhere"]


def test_an_adjustment_must_be_after_its_conversion_and_not_in_the_future(
    client: GoogleAdsClient, ads: GoogleAdsEmulator
) -> None:
    converted = {f"deal-{i}": NOW - dt.timedelta(days=1, minutes=i) for i in range(1, 5)}
    upload(
        client,
        [
            conversion(client, order_id=k, conversion_date_time=stamp(t))
            for k, t in converted.items()
        ],
    )
    assert len(ads.uploads) == 4
    ads.now = NOW + dt.timedelta(hours=25)
    second = dt.timedelta(seconds=1)
    adjusted_at = {
        "deal-1": converted["deal-1"],  # not after the conversion
        "deal-2": converted["deal-2"] - second,
        "deal-3": ads.now + second,
        "deal-4": converted["deal-4"] + second,
    }

    response = adjust(
        client,
        [
            {"order_id": k, "adjustment_type": "RETRACTION", "adjustment_date_time": stamp(t)}
            for k, t in adjusted_at.items()
        ],
    )

    assert row_errors(client, response) == {
        0: "ADJUSTMENT_PRECEDES_CONVERSION",
        1: "ADJUSTMENT_PRECEDES_CONVERSION",
        2: "LATER_THAN_MAXIMUM_DATE",
    }
    assert [(a.conversion.order_id, a.adjustment_type) for a in ads.adjustments] == [
        ("deal-4", "RETRACTION")
    ]


def test_more_than_2000_adjustments_fail_the_whole_request(client: GoogleAdsClient) -> None:
    rows = [{"order_id": f"deal-{i}", "adjustment_type": "RETRACTION"} for i in range(2001)]

    with pytest.raises(GoogleAdsException) as raised:
        adjust(client, rows)

    assert whole_request_error(raised) == "TOO_MANY_ADJUSTMENTS_IN_REQUEST"


def test_oauth_client_credentials_in_body_or_basic_auth(oauth: OAuthEmulator) -> None:
    body = {
        "grant_type": "client_credentials",
        "client_id": "test-client",
        "client_secret": "test-secret",
    }
    assert post_token(oauth, body)[0] == 200
    basic = base64.b64encode(b"test-client:test-secret").decode()
    status, reply = post_token(oauth, {"grant_type": "client_credentials"}, basic=basic)
    assert status == 200
    assert reply["token_type"] == "Bearer"
    assert oauth.token_status(reply["access_token"]) is TokenStatus.VALID
    assert post_token(oauth, {**body, "client_secret": "wrong"}) == (
        400,
        {"error": "invalid_grant"},
    )
    assert post_token(oauth, {"grant_type": "password"}) == (
        400,
        {"error": "unsupported_grant_type"},
    )


def test_oauth_jwt_bearer_with_service_account_and_es256_keys(oauth: OAuthEmulator) -> None:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    oauth.jwt_issuers = {"robot@example.iam": public_pem(rsa_key), "sf-app": public_pem(ec_key)}
    oauth.extra_fields = {"instance_url": "https://sf.example"}
    account = service_account.Credentials.from_service_account_info(
        {
            "client_email": "robot@example.iam",
            "private_key": rsa_key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ).decode(),
            "token_uri": oauth.token_url,
        },
        scopes=["https://www.googleapis.com/auth/adwords"],
    )

    account.refresh(Request())

    assert oauth.token_status(account.token) is TokenStatus.VALID
    signer = crypt.ES256Signer.from_string(
        ec_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    exp = int(dt.datetime.now(dt.UTC).timestamp()) + 300
    assertion = jwt.encode(signer, {"iss": "sf-app", "sub": "ops@example.com", "exp": exp})
    status, reply = post_token(oauth, {"grant_type": JWT_BEARER, "assertion": assertion.decode()})
    assert (status, reply["instance_url"]) == (200, "https://sf.example")
    forged = jwt.encode(signer, {"iss": "robot@example.iam", "exp": exp}).decode()
    assert post_token(oauth, {"grant_type": JWT_BEARER, "assertion": forged})[0] == 400
    stale = jwt.encode(signer, {"iss": "sf-app", "exp": exp - 600}).decode()
    assert post_token(oauth, {"grant_type": JWT_BEARER, "assertion": stale})[0] == 400


def public_pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def post_token(
    oauth: OAuthEmulator, form: dict[str, str], basic: str | None = None
) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        oauth.token_url, data=urllib.parse.urlencode(form).encode(), method="POST"
    )
    if basic:
        request.add_header("Authorization", f"Basic {basic}")
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())
