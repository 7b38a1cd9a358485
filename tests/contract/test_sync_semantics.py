"""A whole sync through the real SDKs to the Data Manager, GA4 and Meta emulators: each
platform receives one conversion per deal, worth its credited share, with one person's
identifiers, nothing of a person who denied consent, and no event time in the future."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr
from sqlalchemy import Engine

from revsync.collect.importer import import_identities, import_touchpoints
from revsync.config.loader import load_config
from revsync.config.settings import Settings
from revsync.destinations.pii import hash_person
from revsync.sync.factory import build_destinations, build_sources
from revsync.sync.job import SyncJob
from tests.emulators.data_manager import DataManagerEmulator, EmulatorClock
from tests.emulators.ga4_mp import GA4MPEmulator
from tests.emulators.meta_graph import MetaGraphEmulator

# 09:00 in New York: a deal closed today is placed at 12:00 local, three hours from now.
NOW = dt.datetime(2026, 11, 20, 14, 0, tzinfo=dt.UTC)
CUSTOMER, ACTION, REFRESH = "1234567890", "111", "1//refresh"
MEASUREMENT_ID, API_SECRET, PIXEL, TOKEN = "G-SEM1", "mp-secret", "4242", "meta-token"
SETTINGS = Settings(
    google_ads_developer_token=SecretStr("dev"), google_oauth_client_id="cid",
    google_oauth_client_secret=SecretStr("cs"), google_oauth_refresh_token=SecretStr(REFRESH),
    ga4_api_secret=SecretStr(API_SECRET), meta_access_token=SecretStr(TOKEN),
)  # fmt: skip
ANN, BOB, CARA = (hash_person(f"{n}@example.com", None) for n in ("ann", "bob", "cara"))
FBCLID = "IwAR2bobAbCdEfGhIjKlMnOp"


@pytest.fixture
def platforms() -> Iterator[tuple[DataManagerEmulator, GA4MPEmulator, MetaGraphEmulator]]:
    with (
        DataManagerEmulator(tokens=set(), refresh_tokens={REFRESH}, clock=EmulatorClock(NOW)) as dm,
        GA4MPEmulator(streams={MEASUREMENT_ID: API_SECRET}) as ga4,
        MetaGraphEmulator(tokens={TOKEN}, pixels={PIXEL}) as meta,
    ):  # fmt: skip
        dm.add_conversion_action(CUSTOMER, ACTION)
        dm.add_click("CjwAnnClick01", customer_id=CUSTOMER, at=NOW - dt.timedelta(days=9))
        ga4.set_time(NOW)
        meta.set_time(NOW)
        yield dm, ga4, meta


def inputs(tmp_path: Path) -> None:
    """Ann clicked a Google ad, Bob (her colleague, on the same deal) a Facebook ad; Cara
    came from a paid Google campaign and denied ad consent."""
    at = {name: (NOW - dt.timedelta(days=d)).isoformat() for name, d in (("a", 9), ("b", 3), ("c", 5))}
    (tmp_path / "tp.csv").write_text(
        "visitor_id,occurred_at,landing_url,_ga,_fbp,consent_ad_user_data\n"
        f"vA,{at['a']},https://x.com/?gclid=CjwAnnClick01,GA1.1.111.1,fb.1.1762000000000.1,granted\n"
        f"vB,{at['b']},https://x.com/?fbclid={FBCLID},GA1.1.222.2,fb.1.1762000000000.2,granted\n"
        f"vC,{at['c']},https://x.com/?utm_source=google&utm_medium=cpc,GA1.1.333.3,,denied\n"
    )
    (tmp_path / "leads.csv").write_text(
        "visitor_id,observed_at,email\n"
        f"vA,{at['a']},ann@example.com\nvB,{at['b']},bob@example.com\nvC,{at['c']},cara@example.com\n"
    )
    today, yesterday = NOW.date().isoformat(), (NOW - dt.timedelta(days=1)).date().isoformat()
    stamp = (NOW - dt.timedelta(minutes=5)).isoformat()
    (tmp_path / "deals.csv").write_text(
        "deal_id,status,amount,currency,close_date,modified_at,contact_id,email\n"
        f"D1,won,900,USD,{today},{stamp},C1,ann@example.com\n"
        f"D1,won,900,USD,{today},{stamp},C2,bob@example.com\n"
        f"D2,won,500,USD,{yesterday},{stamp},C3,cara@example.com\n"
    )


def mapping(tmp_path: Path, dm: DataManagerEmulator, ga4: GA4MPEmulator, meta: MetaGraphEmulator) -> Path:  # fmt: skip
    path = tmp_path / "revsync.yaml"
    path.write_text(f"""
attribution: {{model: linear}}
sources:
  - {{name: crm, type: file, path: deals.csv, timezone: America/New_York, close_time: "12:00"}}
destinations:
  - {{name: gads, type: google_ads, transport: data_manager, customer_id: "{CUSTOMER}",
     conversion_action: "{ACTION}", enhanced_conversions: true, data_manager_endpoint: "http://{dm.host}",
     token_uri: "{dm.token_uri}", account_timezone: America/New_York, timeout_seconds: 10}}
  - {{name: ga4, type: ga4, transport: http, measurement_id: {MEASUREMENT_ID}, base_url: "{ga4.url}",
     event_name: purchase, timeout_seconds: 10}}
  - {{name: meta, type: meta, transport: api, pixel_id: "{PIXEL}", graph_url: "{meta.url}",
     timeout_seconds: 10}}
""")  # fmt: skip
    return path


def test_each_platform_gets_one_persons_conversion_at_its_share(
    engine: Engine,
    tmp_path: Path,
    platforms: tuple[DataManagerEmulator, GA4MPEmulator, MetaGraphEmulator],
) -> None:
    dm, ga4, meta = platforms
    inputs(tmp_path)
    assert import_touchpoints(engine, tmp_path / "tp.csv").rejected == 0
    import_identities(engine, tmp_path / "leads.csv")
    config = load_config(mapping(tmp_path, dm, ga4, meta))
    clock = lambda: NOW  # noqa: E731

    summary = SyncJob(engine, config, build_sources(config, SETTINGS),
                      build_destinations(config, SETTINGS, clock), clock=clock).run()  # fmt: skip

    assert summary.status == "ok", summary.as_dict()
    assert dict(summary.planned) == {"gads": 1, "ga4": 1, "meta": 1}  # D1 only; Cara denied
    assert summary.skipped["gads: visitor denied ad consent; not uploaded"] == 1
    # Google (Data Manager): Ann's click and Ann's email, Google's half of the linear split.
    dm.clock.set(NOW + dt.timedelta(hours=1))
    [google] = [stored.event for stored in dm.events]
    assert google.ad_identifiers.gclid == "CjwAnnClick01" and google.conversion_value == 450.0
    assert [u.email_address for u in google.user_data.user_identifiers] == [ANN.email_google]
    assert google.event_timestamp.timestamp() <= NOW.timestamp()  # closes at 12:00, 3 h ahead
    # GA4: the whole amount (the cross-channel view), Bob's browser and Bob's email.
    [event] = ga4.events
    assert event.client_id == "222.2" and event.params["value"] == 900.0
    assert event.payload["user_data"]["sha256_email_address"] == [BOB.email_google]
    # Meta: Bob's click, Bob's email, Meta's half.
    [server] = [e.data for e in meta.events]
    assert server["custom_data"]["value"] == 450.0
    assert server["user_data"]["fbc"].endswith(FBCLID) and server["user_data"]["em"] == [BOB.email]
    assert server["event_time"] <= NOW.timestamp()
    wire = json.dumps([e.payload for e in ga4.events] + [e.data for e in meta.events])
    assert CARA.email not in wire and CARA.email_google not in wire and "333.3" not in wire
