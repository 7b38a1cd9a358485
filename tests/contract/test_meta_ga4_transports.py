"""Meta and GA4 destinations with their real transports against the local emulators.

The facebook-business SDK and httpx talk over sockets to ``tests/emulators``; nothing of
either library is mocked. Retry waits are recorded instead of slept.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest
from facebook_business.api import FacebookAdsApi
from facebook_business.session import FacebookSession
from pydantic import SecretStr

from revsync.config.destinations import Ga4Destination as Ga4Config
from revsync.config.destinations import MetaDestination as MetaConfig
from revsync.config.mapping import RevsyncConfig
from revsync.config.settings import Settings
from revsync.destinations.ga4 import Ga4Destination
from revsync.destinations.ga4_http import Ga4HttpTransport
from revsync.destinations.meta import MetaDestination
from revsync.destinations.meta_api import MetaApiTransport
from revsync.destinations.pii import hash_person
from revsync.destinations.retry import RetryPolicy
from revsync.domain import (
    Channel,
    ClickIds,
    Consent,
    Contact,
    Conversion,
    Credit,
    Deal,
    DealStatus,
    Journey,
    OutcomeStatus,
    Touchpoint,
    UploadOutcome,
)
from revsync.errors import ConfigError, PermanentError
from revsync.sync.factory import build_destinations
from tests.emulators.ga4_mp import GA4MPEmulator
from tests.emulators.http_base import Response
from tests.emulators.meta_graph import MetaGraphEmulator

NOW = 1_795_000_000
NOW_DT = datetime.fromtimestamp(NOW, UTC)
TOKEN = "EAAB-contract-token-5d2e"
WRONG_TOKEN = "EAAB-wrong-token-0000"
PIXEL = "1234567890"
MEASUREMENT_ID = "G-CONTRACT1"
API_SECRET = "mp-secret-8c41"
EMAIL = "Jane.Doe@Example.com"
PHONE = "+1 415 555 0100"
RAW_PII = (EMAIL, EMAIL.lower(), "+14155550100", "4155550100")
FBC = "fb.1.1794999000000.IwAR2xYz_AbC-123"
CLIENT_A = "1234567890.1700000000"
CLIENT_B = "987654321.1700000001"
SHA256 = re.compile(r"\b[0-9a-f]{64}\b")


# --- builders --------------------------------------------------------------------------


def journey(
    n: int, *, age: timedelta = timedelta(hours=2), client_id: str = CLIENT_A
) -> tuple[Journey, list[Credit]]:
    """A won deal with one paid-social landing that carries fbc and a GA4 client_id."""
    close = NOW_DT - age
    touchpoint = Touchpoint(
        id=f"tp-{n}",
        visitor_id=f"visitor-{n}",
        occurred_at=close - timedelta(days=1),
        channel=Channel.PAID_SOCIAL,
        click_ids=ClickIds(fbc=FBC, ga_client_id=client_id),
        consent=Consent(ad_user_data=True, ad_personalization=True),
    )
    deal = Deal(
        source="crm",
        id=f"deal-{n}",
        status=DealStatus.WON,
        amount=Decimal("1250.50"),
        currency="EUR",
        close_at=close,
        modified_at=close,
        contacts=(Contact(f"contact-{n}", hash_person(EMAIL, PHONE), is_primary=True),),
    )
    return Journey(deal, (touchpoint,)), [Credit(touchpoint.id, Fraction(1), Decimal("1250.50"))]


def planned(
    destination: MetaDestination | Ga4Destination, count: int, start: int = 0, **kwargs: Any
) -> list[Conversion]:
    conversions: list[Conversion] = []
    for n in range(start, start + count):
        plan = destination.plan(*journey(n, **kwargs), NOW_DT)
        assert plan.skipped == ()
        conversions.extend(plan.conversions)
    return conversions


def statuses(outcomes: list[UploadOutcome]) -> set[tuple[OutcomeStatus, str | None]]:
    return {(o.status, o.code) for o in outcomes}


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def policy(sleeps: list[float]) -> RetryPolicy:
    return RetryPolicy(attempts=3, initial_wait=0.01, max_wait=5, jitter=0.01, sleep=sleeps.append)


@pytest.fixture
def meta() -> Iterator[MetaGraphEmulator]:
    with MetaGraphEmulator(tokens={TOKEN}, pixels={PIXEL}) as emulator:
        emulator.set_time(NOW)
        yield emulator
        assert emulator.internal_errors == []


@pytest.fixture
def ga4() -> Iterator[GA4MPEmulator]:
    with GA4MPEmulator(streams={MEASUREMENT_ID: API_SECRET}) as emulator:
        emulator.set_time(NOW)
        yield emulator
        assert emulator.internal_errors == []


def meta_destination(
    emulator: MetaGraphEmulator, policy: RetryPolicy, token: str = TOKEN, **config: Any
) -> MetaDestination:
    block = MetaConfig(
        type="meta", name="meta", pixel_id=PIXEL, graph_url=emulator.url, timeout_seconds=5,
        **config,
    )  # fmt: skip
    transport = MetaApiTransport(block, SecretStr(token), policy)
    return MetaDestination(block, "last_touch", transport, clock=lambda: NOW_DT)


def ga4_destination(emulator: GA4MPEmulator, policy: RetryPolicy, **config: Any) -> Ga4Destination:
    block = Ga4Config(**{
        "type": "ga4", "name": "ga4", "measurement_id": MEASUREMENT_ID,
        "base_url": emulator.url, "timeout_seconds": 5, **config,
    })  # fmt: skip
    transport = Ga4HttpTransport(block, SecretStr(API_SECRET), retry=policy)
    return Ga4Destination(block, "last_touch", transport, clock=lambda: NOW_DT)


# --- Meta ------------------------------------------------------------------------------


def test_meta_sends_at_most_1000_events_per_request(
    meta: MetaGraphEmulator, policy: RetryPolicy
) -> None:
    graph, default_api, hook = (
        FacebookSession.GRAPH,
        FacebookAdsApi.get_default_api(),
        sys.excepthook,
    )
    destination = meta_destination(meta, policy)
    conversions = planned(destination, 1500)

    outcomes = destination.send(conversions)

    assert [o.key for o in outcomes] == [c.key for c in conversions]
    assert statuses(outcomes) == {(OutcomeStatus.SENT, None)}
    assert [len(json.loads(x.request.form()["data"])) for x in meta.log] == [1000, 500]
    assert len(meta.events) == 1500
    # The SDK's process-wide state is untouched: default api, base URL, crash reporter hook.
    assert graph == FacebookSession.GRAPH
    assert FacebookAdsApi.get_default_api() is default_api
    assert sys.excepthook is hook
    destination.close()


def test_meta_batch_size_and_wire_format(meta: MetaGraphEmulator, policy: RetryPolicy) -> None:
    destination = meta_destination(meta, policy, batch_size=2, test_event_code="TEST123")
    conversions = planned(destination, 3)

    assert statuses(destination.send(conversions)) == {(OutcomeStatus.VALIDATED, "TEST_EVENT")}

    assert [len(json.loads(x.request.form()["data"])) for x in meta.log] == [2, 1]
    request = meta.log[0].request
    form = request.form()
    assert request.path == f"/v26.0/{PIXEL}/events"
    assert "access_token" not in request.query  # urllib3 logs URLs: the token is in the body
    assert form["access_token"] == TOKEN
    assert form["test_event_code"] == "TEST123"
    sent = [json.loads(item) for item in json.loads(form["data"])]
    assert sent == destination.build(conversions[:2])[0].body["data"]
    assert sent[0]["custom_data"] == {"value": 1250.5, "currency": "EUR"}
    assert len(meta.test_events) == 3 and meta.events == []


def test_meta_one_bad_event_is_isolated_and_the_others_sent(
    meta: MetaGraphEmulator, policy: RetryPolicy
) -> None:
    destination = meta_destination(meta, policy)
    conversions = planned(destination, 3)
    conversions[1] = dataclasses.replace(conversions[1], currency="EURO")

    outcomes = destination.send(conversions)

    assert [(o.status, o.code) for o in outcomes] == [
        (OutcomeStatus.SENT, None), (OutcomeStatus.REJECTED, "META_100"), (OutcomeStatus.SENT, None),
    ]  # fmt: skip
    assert "currency" in (outcomes[1].message or "")
    # [0,1,2] refused -> [0] sent, [1,2] refused -> [1] refused, [2] sent
    assert meta.calls == 5
    assert sorted(e.data["event_id"] for e in meta.events) == sorted(
        [conversions[0].key, conversions[2].key]
    )


def test_meta_never_sends_events_near_or_past_seven_days(
    meta: MetaGraphEmulator, policy: RetryPolicy
) -> None:
    destination = meta_destination(meta, policy)
    # Closed 8 days, or 7 days less 30 minutes, ago: revsync skips them when planning.
    for age in (timedelta(days=8), timedelta(days=7) - timedelta(minutes=30)):
        plan = destination.plan(*journey(0, age=age), NOW_DT)
        assert plan.conversions == () and [s.field for s in plan.skipped] == ["close_date"]
    aging = planned(destination, 1, start=1, age=timedelta(days=6, hours=12))
    fresh = planned(destination, 1, start=2)
    destination.clock = lambda: NOW_DT + timedelta(hours=12)  # the first row aged meanwhile

    outcomes = destination.send([*aging, *fresh])

    assert {o.key: (o.status, o.code) for o in outcomes} == {
        aging[0].key: (OutcomeStatus.SKIPPED, "EVENT_TOO_OLD"),
        fresh[0].key: (OutcomeStatus.SENT, None),
    }
    assert meta.calls == 1
    assert [e.data["event_id"] for e in meta.events] == [fresh[0].key]


@pytest.mark.parametrize("expired", [False, True])
def test_meta_bad_or_expired_token_is_tried_once(
    meta: MetaGraphEmulator, policy: RetryPolicy, sleeps: list[float], expired: bool
) -> None:
    if expired:
        meta.expire_token(TOKEN)
    destination = meta_destination(meta, policy, token=TOKEN if expired else WRONG_TOKEN)

    # A refused token says nothing about the rows: the destination stops (the job puts the
    # rows back to planned) rather than rejecting every row for good.
    with pytest.raises(PermanentError, match="META_190") as refused:
        destination.send(planned(destination, 2))

    assert ("subcode 463" in str(refused.value)) is expired
    assert TOKEN not in str(refused.value) and WRONG_TOKEN not in str(refused.value)
    assert meta.calls == 1 and sleeps == []


def test_meta_throttling_is_retried_then_succeeds(
    meta: MetaGraphEmulator, policy: RetryPolicy, sleeps: list[float]
) -> None:
    destination = meta_destination(meta, policy)
    meta.throttle_next(2, code=17)

    outcomes = destination.send(planned(destination, 3))

    assert statuses(outcomes) == {(OutcomeStatus.SENT, None)}
    assert meta.calls == 3 and len(sleeps) == 2 and len(meta.events) == 3


def test_meta_throttling_that_persists_leaves_rows_to_retry(
    meta: MetaGraphEmulator, policy: RetryPolicy
) -> None:
    destination = meta_destination(meta, policy)
    meta.throttle_next(5, code=613)

    outcomes = destination.send(planned(destination, 2))

    assert statuses(outcomes) == {(OutcomeStatus.RETRY, "META_613")}
    assert meta.calls == 3


def test_meta_server_error_honours_retry_after(
    meta: MetaGraphEmulator, policy: RetryPolicy, sleeps: list[float]
) -> None:
    destination = meta_destination(meta, policy)
    meta.fail_next(1, status=503, retry_after=2)

    assert statuses(destination.send(planned(destination, 1))) == {(OutcomeStatus.SENT, None)}
    assert meta.calls == 2 and 1.9 <= sleeps[0] <= 5

    meta.fail_next(1, status=500, retry_after=3600)  # too long to wait in process
    outcomes = destination.send(planned(destination, 1, start=1))

    assert statuses(outcomes) == {(OutcomeStatus.RETRY, "META_2")}
    assert meta.calls == 3
    due = outcomes[0].retry_after
    assert due is not None and abs((due - datetime.now(UTC)).total_seconds() - 3600) < 60


def test_meta_network_failure_is_retried_then_left_to_retry(
    meta: MetaGraphEmulator, policy: RetryPolicy, sleeps: list[float]
) -> None:
    destination = meta_destination(meta, policy)
    meta.stop()

    outcomes = destination.send(planned(destination, 2))

    assert statuses(outcomes) == {(OutcomeStatus.RETRY, "META_NETWORK")}
    assert len(sleeps) == 2
    assert "ConnectionError" in (outcomes[0].message or "")


def test_meta_short_acknowledgement_is_resent(meta: MetaGraphEmulator, policy: RetryPolicy) -> None:
    destination = meta_destination(meta, policy)
    meta.inject(Response.json(200, {"events_received": 1, "messages": [], "fbtrace_id": "t"}))

    outcomes = destination.send(planned(destination, 2))

    assert statuses(outcomes) == {(OutcomeStatus.RETRY, "META_PARTIAL")}


def test_meta_resend_is_deduplicated_on_event_id(
    meta: MetaGraphEmulator, policy: RetryPolicy
) -> None:
    destination = meta_destination(meta, policy)
    conversions = planned(destination, 3)

    first, again = destination.send(conversions), destination.send(conversions)

    assert statuses(first) == statuses(again) == {(OutcomeStatus.SENT, None)}
    assert len(meta.events) == 3 and len(meta.duplicates) == 3


# --- GA4 -------------------------------------------------------------------------------


def test_ga4_sends_one_client_and_at_most_25_events_per_request(
    ga4: GA4MPEmulator, policy: RetryPolicy
) -> None:
    destination = ga4_destination(ga4, policy)
    conversions = planned(destination, 60) + planned(destination, 3, start=60, client_id=CLIENT_B)

    outcomes = destination.send(conversions)

    assert [o.key for o in outcomes] == [c.key for c in conversions]
    assert statuses(outcomes) == {(OutcomeStatus.SENT, None)}
    bodies = [x.request.json() for x in ga4.log]
    assert [(b["client_id"], len(b["events"])) for b in bodies] == [
        (CLIENT_A, 25), (CLIENT_A, 25), (CLIENT_A, 10), (CLIENT_B, 3),
    ]  # fmt: skip
    assert {x.request.arg("api_secret") for x in ga4.log} == {API_SECRET}
    assert {x.request.arg("measurement_id") for x in ga4.log} == {MEASUREMENT_ID}
    assert {x.request.path for x in ga4.log} == {"/mp/collect"}
    assert len(ga4.events) == 63 and ga4.invalid == []
    destination.close()


def test_ga4_retries_429_then_succeeds(
    ga4: GA4MPEmulator, policy: RetryPolicy, sleeps: list[float]
) -> None:
    destination = ga4_destination(ga4, policy)
    ga4.fail_next(2, status=429, retry_after=1)

    assert statuses(destination.send(planned(destination, 2))) == {(OutcomeStatus.SENT, None)}
    assert ga4.calls == 3 and len(sleeps) == 2 and min(sleeps) >= 0.9


def test_ga4_a_5xx_is_an_uncertain_send_held_as_unknown_never_retried(
    ga4: GA4MPEmulator, policy: RetryPolicy
) -> None:
    """GA4 does not deduplicate: a 5xx may come after the events were recorded, so the
    rows are held as unknown (an operator settles them), never sent again by revsync."""
    destination = ga4_destination(ga4, policy)
    ga4.process_then_fail(1, status=503)

    rows = planned(destination, 2)
    outcomes = destination.send(rows)

    assert statuses(outcomes) == {(OutcomeStatus.UNKNOWN, "GA4_HTTP_503")}
    assert "may have recorded the events" in (outcomes[0].message or "")
    assert ga4.calls == 1 and len(ga4.events) == 2  # recorded once, not re-sent


def test_ga4_an_answer_after_the_timeout_is_held_as_unknown(
    ga4: GA4MPEmulator, policy: RetryPolicy
) -> None:
    destination = ga4_destination(ga4, policy, timeout_seconds=0.3)
    ga4.process_then_stall(1.0)

    outcomes = destination.send(planned(destination, 1))

    assert statuses(outcomes) == {(OutcomeStatus.UNKNOWN, "GA4_UNCERTAIN")}
    assert "no answer came within the timeout" in (outcomes[0].message or "")
    assert ga4.calls == 1 and len(ga4.events) == 1


def test_ga4_a_connection_reset_after_the_body_was_read_is_held_as_unknown(
    ga4: GA4MPEmulator, policy: RetryPolicy
) -> None:
    destination = ga4_destination(ga4, policy)
    ga4.process_then_reset(1)

    outcomes = destination.send(planned(destination, 2))

    assert statuses(outcomes) == {(OutcomeStatus.UNKNOWN, "GA4_UNCERTAIN")}
    assert "the connection closed before the answer" in (outcomes[0].message or "")
    assert ga4.calls == 1 and len(ga4.events) == 2  # recorded once, not re-sent


def test_ga4_a_refused_connection_is_safe_to_retry(policy: RetryPolicy) -> None:
    with GA4MPEmulator(streams={MEASUREMENT_ID: API_SECRET}) as emulator:
        destination = ga4_destination(emulator, policy)
    outcomes = destination.send(planned(destination, 1))  # the emulator is gone: refused
    assert statuses(outcomes) == {(OutcomeStatus.RETRY, "GA4_NETWORK")}


def test_ga4_other_4xx_rejects_every_row_once(ga4: GA4MPEmulator, policy: RetryPolicy) -> None:
    destination = ga4_destination(ga4, policy)
    ga4.inject(Response(403, b"forbidden"))

    outcomes = destination.send(planned(destination, 2))

    assert statuses(outcomes) == {(OutcomeStatus.REJECTED, "GA4_HTTP_403")}
    assert ga4.calls == 1


def test_ga4_validate_mode_maps_messages_to_their_rows(
    ga4: GA4MPEmulator, policy: RetryPolicy
) -> None:
    destination = ga4_destination(ga4, policy, validate_only=True)
    good, lower, reserved = planned(destination, 3)
    lower = dataclasses.replace(lower, currency="eur")
    reserved = dataclasses.replace(reserved, action="session_start")

    outcomes = destination.send([good, lower, reserved])

    assert [(o.status, o.code) for o in outcomes] == [
        (OutcomeStatus.VALIDATED, "VALIDATED"),
        (OutcomeStatus.REJECTED, "VALUE_INVALID"),
        (OutcomeStatus.REJECTED, "NAME_RESERVED"),
    ]
    assert "events[1].params.currency" in (outcomes[1].message or "")
    assert "session_start" in (outcomes[2].message or "")
    assert ga4.log[0].request.path == "/debug/mp/collect"
    assert ga4.events == []


def test_ga4_validate_mode_request_level_message_rejects_every_row(
    ga4: GA4MPEmulator, policy: RetryPolicy
) -> None:
    destination = ga4_destination(ga4, policy, validate_only=True)

    outcomes = destination.send(planned(destination, 2, client_id="not-a-client-id"))

    assert statuses(outcomes) == {(OutcomeStatus.REJECTED, "VALUE_INVALID")}
    assert all("client_id" in (o.message or "") for o in outcomes)


# --- secrets and PII -------------------------------------------------------------------


def test_no_secret_or_raw_pii_in_logs_outcomes_or_wire(
    meta: MetaGraphEmulator,
    ga4: GA4MPEmulator,
    policy: RetryPolicy,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    # Other SDKs (hubspot-api-client's generated Configuration) lower these globally.
    for name in ("urllib3", "httpx", "httpcore"):
        caplog.set_level(logging.DEBUG, logger=name)
    outcomes: list[UploadOutcome] = []
    meta_ok = meta_destination(meta, policy)
    meta_bad_token = meta_destination(meta, policy, token=WRONG_TOKEN)
    outcomes += meta_ok.send(planned(meta_ok, 2))
    with pytest.raises(PermanentError) as refused:
        meta_bad_token.send(planned(meta_bad_token, 2))
    outcomes += meta_ok.send([dataclasses.replace(c, currency="EURO") for c in planned(meta_ok, 2)])
    meta.throttle_next(3, code=4)
    outcomes += meta_ok.send(planned(meta_ok, 1))
    ga4_ok = ga4_destination(ga4, policy)
    outcomes += ga4_ok.send(planned(ga4_ok, 2))
    ga4.fail_next(3, status=500)
    outcomes += ga4_ok.send(planned(ga4_ok, 2))
    ga4.inject(Response(400, f"bad api_secret={API_SECRET} for {EMAIL}".encode()))
    outcomes += ga4_ok.send(planned(ga4_ok, 2))
    ga4_debug = ga4_destination(ga4, policy, validate_only=True)
    outcomes += ga4_debug.send(planned(ga4_debug, 2, client_id="x"))
    meta.stop()
    outcomes += meta_ok.send(planned(meta_ok, 1))
    ga4.stop()
    outcomes += ga4_ok.send(planned(ga4_ok, 1))

    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    texts = [formatter.format(record) for record in caplog.records]
    texts += [f"{o.code} {o.message}" for o in outcomes] + [str(refused.value)]
    forbidden = [TOKEN, WRONG_TOKEN, API_SECRET, *RAW_PII]
    assert not [t for t in texts if any(f in t for f in forbidden)]
    assert not [o.message for o in outcomes if SHA256.search(o.message or "")]
    # The checks saw what they guard against: request lines and retry warnings were logged.
    assert any("api_secret=***" in t for t in texts if t.startswith("httpx"))
    assert any(f"/{PIXEL}/events" in t for t in texts if t.startswith("urllib3"))
    assert any("retrying" in t for t in texts)
    wire = [x.request.body.decode() for x in [*meta.log, *ga4.log]]
    assert not [w for w in wire if any(p in w for p in RAW_PII)]


# --- factory ---------------------------------------------------------------------------


def _config() -> RevsyncConfig:
    return RevsyncConfig.model_validate({
        "sources": [],
        "destinations": [
            {"type": "meta", "name": "meta", "pixel_id": PIXEL},
            {"type": "ga4", "name": "ga4", "measurement_id": MEASUREMENT_ID},
        ],
    })  # fmt: skip


@pytest.fixture
def no_env_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("REVSYNC_META_ACCESS_TOKEN", "REVSYNC_GA4_API_SECRET"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.usefixtures("no_env_secrets")
def test_factory_builds_the_api_transports_from_settings() -> None:
    settings = Settings(meta_access_token=SecretStr(TOKEN), ga4_api_secret=SecretStr(API_SECRET))

    meta_dest, ga4_dest = build_destinations(_config(), settings)

    assert isinstance(meta_dest, MetaDestination)
    assert isinstance(meta_dest.transport, MetaApiTransport)
    assert isinstance(ga4_dest, Ga4Destination)
    assert isinstance(ga4_dest.transport, Ga4HttpTransport)
    for destination in (meta_dest, ga4_dest):
        destination.close()


@pytest.mark.usefixtures("no_env_secrets")
@pytest.mark.parametrize(
    ("secrets", "variable"),
    [
        ({"ga4_api_secret": SecretStr(API_SECRET)}, "REVSYNC_META_ACCESS_TOKEN"),
        ({"meta_access_token": SecretStr(TOKEN)}, "REVSYNC_GA4_API_SECRET"),
    ],
)
def test_factory_names_the_missing_secret(secrets: dict[str, SecretStr], variable: str) -> None:
    with pytest.raises(ConfigError) as caught:
        build_destinations(_config(), Settings(**secrets))

    assert variable in str(caught.value)
    assert TOKEN not in str(caught.value) and API_SECRET not in str(caught.value)
