"""A whole sync against the Google emulators: a token that may not upload through the
Ads API stops the destination without spending its rows; switching the mapping to
Data Manager sends them; a later run reads the request verdicts back into the ledger."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr
from sqlalchemy import Engine, select

from revsync.collect.importer import import_identities, import_touchpoints
from revsync.config.loader import load_config
from revsync.config.settings import Settings
from revsync.store.schema import conversions
from revsync.sync.factory import build_destinations, build_sources
from revsync.sync.job import SyncJob
from revsync.sync.summary import RunSummary
from tests.emulators.data_manager import DataManagerEmulator, EmulatorClock
from tests.emulators.google_ads import GoogleAdsEmulator
from tests.emulators.oauth import OAuthEmulator
from tests.emulators.tls import TlsFiles, make_tls_files

NOW = dt.datetime(2026, 11, 16, 12, 0, tzinfo=dt.UTC)
CUSTOMER, ACTION = "1234567890", "111"
DEV_TOKEN, CLIENT_ID, CLIENT_SECRET, REFRESH = "dev-tok", "cid", "csecret", "1//refresh"
SETTINGS = Settings(
    google_ads_developer_token=SecretStr(DEV_TOKEN),
    google_oauth_client_id=CLIENT_ID,
    google_oauth_client_secret=SecretStr(CLIENT_SECRET),
    google_oauth_refresh_token=SecretStr(REFRESH),
)
CLICKS = {"CjwKCAgood0001": 10, "CjwKCAgood0002": 12, "CjwKCAunknown03": 14}


@pytest.fixture
def tls(tmp_path: Path) -> TlsFiles:
    return make_tls_files(tmp_path / "tls")


@pytest.fixture
def ads(tls: TlsFiles) -> Iterator[tuple[GoogleAdsEmulator, OAuthEmulator]]:
    with (
        OAuthEmulator(
            clients={CLIENT_ID: CLIENT_SECRET}, refresh_tokens={REFRESH: CLIENT_ID}
        ) as oauth,
        GoogleAdsEmulator(tls, oauth, developer_tokens=(DEV_TOKEN,), now=NOW) as emulator,
    ):
        emulator.add_conversion_action(CUSTOMER, int(ACTION), "Closed won")
        emulator.not_allowlisted_tokens.add(DEV_TOKEN)
        yield emulator, oauth


@pytest.fixture
def dm() -> Iterator[DataManagerEmulator]:
    with DataManagerEmulator(
        tokens=set(), refresh_tokens={REFRESH}, clock=EmulatorClock(NOW)
    ) as emulator:
        emulator.add_conversion_action(CUSTOMER, ACTION)
        for click, days in list(CLICKS.items())[:2]:  # the third click is unknown to Google
            emulator.add_click(click, customer_id=CUSTOMER, at=NOW - dt.timedelta(days=days))
        yield emulator


def write_inputs(tmp_path: Path) -> None:
    touchpoints = ["visitor_id,occurred_at,landing_url,consent_ad_user_data"]
    leads = ["visitor_id,observed_at,email"]
    deals = ["deal_id,status,amount,currency,close_date,modified_at,contact_id,email"]
    for n, (click, days) in enumerate(CLICKS.items(), start=1):
        at = NOW - dt.timedelta(days=days)
        touchpoints.append(f"v{n},{at.isoformat()},https://x.com/?gclid={click},granted")
        leads.append(f"v{n},{(at + dt.timedelta(minutes=5)).isoformat()},p{n}@example.com")
        deals.append(f"D{n},won,{n}000,EUR,2026-11-15,2026-11-15T18:00:00Z,C{n},p{n}@example.com")
    (tmp_path / "tp.csv").write_text("\n".join(touchpoints) + "\n")
    (tmp_path / "leads.csv").write_text("\n".join(leads) + "\n")
    (tmp_path / "deals.csv").write_text("\n".join(deals) + "\n")


def mapping(tmp_path: Path, transport: str, endpoint: str, token_uri: str, ca: Path) -> Path:
    path = tmp_path / "revsync.yaml"
    path.write_text(
        f"""
sources:
  - {{name: crm, type: file, path: deals.csv}}
destinations:
  - name: gads
    type: google_ads
    transport: {transport}
    customer_id: "{CUSTOMER}"
    conversion_action: "{ACTION}"
    endpoint: {endpoint}
    data_manager_endpoint: {endpoint}
    token_uri: {token_uri}
    ca_bundle: {ca}
    timeout_seconds: 10
"""
    )
    return path


def run(engine: Engine, path: Path, now: dt.datetime) -> RunSummary:
    config = load_config(path)
    clock = lambda: now  # noqa: E731
    return SyncJob(
        engine, config, build_sources(config, SETTINGS),
        build_destinations(config, SETTINGS, clock), clock=clock,
    ).run()  # fmt: skip


def ledger(engine: Engine) -> dict[str, tuple[str, str | None, bool]]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(
                conversions.c.deal_id,
                conversions.c.state,
                conversions.c.error_code,
                conversions.c.request_id,
            )
        ).all()
    return {deal: (state, code, request is not None) for deal, state, code, request in rows}


def test_not_allowlisted_then_data_manager_then_status_read_back(
    engine: Engine,
    tmp_path: Path,
    tls: TlsFiles,
    ads: tuple[GoogleAdsEmulator, OAuthEmulator],
    dm: DataManagerEmulator,
) -> None:
    emulator, oauth = ads
    write_inputs(tmp_path)
    import_touchpoints(engine, tmp_path / "tp.csv")
    import_identities(engine, tmp_path / "leads.csv")

    ads_api = mapping(tmp_path, "ads_api", emulator.endpoint, oauth.token_url, tls.ca_cert)
    first = run(engine, ads_api, NOW)
    assert first.status == "failed"
    assert "data_manager" in first.failures[0]
    assert {state for state, _, _ in ledger(engine).values()} == {"planned"}  # unspent
    assert emulator.uploads == []

    via_dm = mapping(tmp_path, "data_manager", f"http://{dm.host}", dm.token_uri, tls.ca_cert)
    second = run(engine, via_dm, NOW + dt.timedelta(minutes=1))
    assert second.status == "ok"
    assert second.results == {"gads": {"sent": 3}}
    assert set(ledger(engine).values()) == {("sent", "DM_ACCEPTED", True)}
    assert dm.calls["IngestEvents"] == 1

    # Too early to ask: Google is still processing; nothing is read back.
    run(engine, via_dm, NOW + dt.timedelta(minutes=5))
    assert dm.calls.get("RetrieveRequestStatus", 0) == 0

    dm.clock.set(NOW + dt.timedelta(hours=1))
    dm.process_due()
    run(engine, via_dm, NOW + dt.timedelta(hours=1))
    assert dm.calls["RetrieveRequestStatus"] == 1
    # One request held all three rows; one click was unknown: a partial success.
    assert set(ledger(engine).values()) == {("sent", "DM_PARTIAL_SUCCESS", True)}
    run(engine, via_dm, NOW + dt.timedelta(hours=2))
    assert dm.calls["RetrieveRequestStatus"] == 1  # a verdict is read once
