"""``import spend --from google_ads|meta`` and ``import clicks`` through the real SDKs
against the Google Ads (gRPC, TLS) and Meta Graph emulators. Every day is relative to the
fixed ``NOW``, never to today."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from pydantic import SecretStr
from sqlalchemy import Engine

from revsync.collect.ad_spend import read_clicks, read_spend
from revsync.config.mapping import RevsyncConfig
from revsync.config.settings import Settings
from revsync.errors import PermanentError
from revsync.store.engine import open_store
from revsync.store.schema import gclid_clicks, spend, touchpoints, visitors
from tests.emulators.google_ads import GoogleAdsEmulator
from tests.emulators.google_ads_reporting import AdsReporting
from tests.emulators.meta_insights import MetaInsightsEmulator
from tests.emulators.oauth import OAuthEmulator
from tests.emulators.tls import TlsFiles

NOW = datetime(2026, 11, 16, 12, 0, tzinfo=UTC)
TODAY = NOW.date()
CUSTOMER, ACCOUNT, TOKEN = "1234567890", "555", "meta-token"
SETTINGS = Settings(
    google_ads_developer_token=SecretStr("test-dev-token"),
    google_oauth_client_id="test-client",
    google_oauth_client_secret=SecretStr("test-secret"),
    google_oauth_refresh_token=SecretStr("test-refresh"),
    meta_access_token=SecretStr(TOKEN),
)


@pytest.fixture
def oauth() -> Iterator[OAuthEmulator]:
    with OAuthEmulator() as emulator:
        yield emulator


@pytest.fixture
def ads(tls: TlsFiles, oauth: OAuthEmulator) -> Iterator[GoogleAdsEmulator]:
    with GoogleAdsEmulator(tls, oauth, now=NOW) as emulator:
        yield emulator


@pytest.fixture
def meta() -> Iterator[MetaInsightsEmulator]:
    with MetaInsightsEmulator(tokens={TOKEN}) as emulator:
        emulator.add_account(ACCOUNT, "USD")
        yield emulator


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Engine]:
    engine = open_store(f"sqlite:///{tmp_path / 'revsync.db'}")
    yield engine
    engine.dispose()


def mapping(ads: GoogleAdsEmulator | None, oauth: OAuthEmulator | None, tls: TlsFiles | None,
            meta: MetaInsightsEmulator | None = None) -> RevsyncConfig:  # fmt: skip
    blocks: list[dict[str, Any]] = []
    if ads is not None and oauth is not None and tls is not None:
        blocks.append({
            "name": "gads", "type": "google_ads", "customer_id": CUSTOMER,
            "conversion_action": "111", "endpoint": ads.endpoint,
            "token_uri": oauth.token_url, "ca_bundle": str(tls.ca_cert),
            "timeout_seconds": 10,
        })  # fmt: skip
    if meta is not None:
        blocks.append({
            "name": "fb", "type": "meta", "pixel_id": "42", "ad_account_id": f"act_{ACCOUNT}",
            "graph_url": meta.url, "timeout_seconds": 10,
        })  # fmt: skip
    return RevsyncConfig.model_validate({"sources": [], "destinations": blocks})


def stored(engine: Engine, platform: str) -> dict[tuple[Any, ...], tuple[Any, ...]]:
    s = spend.c
    query = sa.select(s.day, s.campaign, s.ad_group, s.keyword, s.cost, s.currency, s.clicks,
                      s.campaign_id).where(s.platform == platform)  # fmt: skip
    with engine.connect() as conn:
        return {tuple(r[:4]): (Decimal(r[4]), *r[5:]) for r in conn.execute(query)}


def test_google_ads_spend_campaign_and_keyword_rows_incremental_with_restatement(
    ads: GoogleAdsEmulator, oauth: OAuthEmulator, tls: TlsFiles, store: Engine
) -> None:
    reporting = AdsReporting(ads)
    ads.stream_batch_size = 2  # several SearchStream responses
    day = TODAY - timedelta(days=1)
    old = TODAY - timedelta(days=40)  # outside the first 30-day window
    reporting.add_campaign_day(CUSTOMER, old, 7, "Brand", 5_000_000, 1, 10)
    reporting.add_campaign_day(CUSTOMER, day, 7, "Brand", 12_345_678, 10, 100)
    reporting.add_campaign_day(CUSTOMER, TODAY - timedelta(days=2), 7, "Brand", 1_000_100, 1, 9)
    reporting.add_campaign_day(CUSTOMER, day, 8, "Generic", 20_000_000, 4, 50)
    for match_type, micros in (("EXACT", 3_000_000), ("PHRASE", 500_000)):
        reporting.add_keyword_day(CUSTOMER, day, (8, "Generic"), (81, "CRM"), "crm software",
                                  match_type, micros, 1, 5)  # fmt: skip
    config = mapping(ads, oauth, tls)

    [read] = read_spend(store, config, SETTINGS, "google_ads", NOW)
    assert (read.first, read.last) == (TODAY - timedelta(days=29), TODAY)
    assert stored(store, "google_ads") == {
        (day, "Brand", "", ""): (Decimal("12.345678"), "EUR", 10, "7"),  # micros, exact
        (TODAY - timedelta(days=2), "Brand", "", ""): (Decimal("1.0001"), "EUR", 1, "7"),
        (day, "Generic", "", ""): (Decimal("20"), "EUR", 4, "8"),
        (day, "Generic", "CRM", "crm software"): (Decimal("3.5"), "EUR", 2, "8"),
    }
    assert all("segments.date BETWEEN" in q for q in reporting.queries)

    # Google restates yesterday, drops a campaign's day; a read one day later re-reads
    # from three days before the last stored day.
    reporting.add_campaign_day(CUSTOMER, day, 7, "Brand", 11_000_000, 9, 90)
    reporting.remove_campaign_day(CUSTOMER, day, 8)
    later = NOW + timedelta(days=1)
    [read] = read_spend(store, mapping(ads, oauth, tls), SETTINGS, "google_ads", later)
    assert (read.first, read.last) == (day - timedelta(days=3), TODAY + timedelta(days=1))
    rows = stored(store, "google_ads")
    assert rows[(day, "Brand", "", "")][0] == Decimal("11")
    assert (day, "Generic", "", "") not in rows
    assert (day, "Generic", "CRM", "crm software") in rows


def test_google_ads_refuses_bad_queries_and_tokens_as_the_api(
    ads: GoogleAdsEmulator, oauth: OAuthEmulator, tls: TlsFiles, store: Engine
) -> None:
    from revsync.collect.ad_spend import _google

    AdsReporting(ads)
    [block] = mapping(ads, oauth, tls).destinations
    transport = _google(block, SETTINGS)  # type: ignore[arg-type]
    cases = {
        "SELECT campaign.nme FROM campaign": "UNRECOGNIZED_FIELD",
        "SELECT campaign.id FROM campaign_budgetx": "BAD_RESOURCE_TYPE_IN_FROM_CLAUSE",
        "SELECT click_view.gclid FROM campaign": "PROHIBITED_FIELD_IN_SELECT_CLAUSE",
        "SELECT segments.date, campaign.id FROM campaign": "EXPECTED_FILTERS_ON_DATE_RANGE",
        "SELECT click_view.gclid FROM click_view WHERE segments.date BETWEEN "
        f"'{TODAY - timedelta(days=2)}' AND '{TODAY}'": "EXPECTED_FILTER_ON_A_SINGLE_DAY",
        "SELECT click_view.gclid FROM click_view WHERE segments.date = "
        f"'{TODAY - timedelta(days=91)}'": "DATE_TOO_OLD",
    }
    try:
        for query, error in cases.items():
            with pytest.raises(PermanentError, match=error):
                list(transport.search_stream(query))
        ok = f"SELECT click_view.gclid FROM click_view WHERE segments.date = '{TODAY}'"
        assert list(transport.search_stream(ok)) == []
    finally:
        transport.close()
    bad = SETTINGS.model_copy(update={"google_ads_developer_token": SecretStr("nope")})
    with pytest.raises(PermanentError, match="DEVELOPER_TOKEN_INVALID"):
        read_spend(store, mapping(ads, oauth, tls), bad, "google_ads", NOW)


def test_gclids_resolve_to_keywords_one_day_per_query_and_unknown_ones_are_kept(
    ads: GoogleAdsEmulator, oauth: OAuthEmulator, tls: TlsFiles, store: Engine
) -> None:
    reporting = AdsReporting(ads)
    clicks = {  # gclid: days before NOW
        "g-known": 5, "g-known-2": 5, "g-display": 6, "g-unknown": 6, "g-too-old": 120,
    }  # fmt: skip
    with store.begin() as conn:
        conn.execute(sa.insert(visitors), [{"id": "v", "first_seen": NOW, "last_seen": NOW}])
        conn.execute(sa.insert(touchpoints), [
            {"id": g, "visitor_id": "v", "occurred_at": NOW - timedelta(days=d),
             "channel": "Paid Search", "gclid": g}
            for g, d in clicks.items()
        ])  # fmt: skip
    for gclid in ("g-known", "g-known-2"):
        reporting.add_click(CUSTOMER, gclid, TODAY - timedelta(days=5), (8, "Generic"),
                            (81, "CRM"), "crm software", "EXACT")  # fmt: skip
    reporting.add_click(CUSTOMER, "g-display", TODAY - timedelta(days=6), (9, "Display"),
                        (91, "Remarketing"))  # fmt: skip

    [read] = read_clicks(store, mapping(ads, oauth, tls), SETTINGS, NOW)
    assert (read.asked, read.resolved, read.unknown) == (4, 3, 1)
    click_queries = [q for q in reporting.queries if "FROM click_view" in q]
    assert len(click_queries) == 2  # one per day
    with store.connect() as conn:
        rows = {r.gclid: r for r in conn.execute(sa.select(gclid_clicks))}
    assert set(rows) == {"g-known", "g-known-2", "g-display", "g-unknown"}
    known = rows["g-known"]
    assert (known.campaign_id, known.campaign, known.ad_group, known.keyword,
            known.match_type) == ("8", "Generic", "CRM", "crm software", "EXACT")  # fmt: skip
    assert (rows["g-display"].campaign, rows["g-display"].keyword) == ("Display", None)
    assert rows["g-unknown"].campaign is None
    [again] = read_clicks(store, mapping(ads, oauth, tls), SETTINGS, NOW)
    assert again.asked == 0  # resolved and unknown gclids are not asked again


def test_a_landing_just_after_midnight_finds_the_click_of_the_day_before(
    ads: GoogleAdsEmulator, oauth: OAuthEmulator, tls: TlsFiles, store: Engine
) -> None:
    """Clicked at 23:59:50, landed at 00:00:05 (UTC, the account's zone): click_view has
    the gclid on the day before the landing. A landing at 00:30 is not asked twice."""
    reporting = AdsReporting(ads)
    midnight = datetime.combine(TODAY - timedelta(days=3), datetime.min.time(), UTC)
    landings = {"g-late": midnight + timedelta(seconds=5), "g-gone": midnight + timedelta(minutes=1),
                "g-half-past": midnight + timedelta(minutes=30)}  # fmt: skip
    with store.begin() as conn:
        conn.execute(sa.insert(visitors), [{"id": "v", "first_seen": NOW, "last_seen": NOW}])
        conn.execute(sa.insert(touchpoints), [
            {"id": g, "visitor_id": "v", "occurred_at": at, "channel": "Paid Search", "gclid": g}
            for g, at in landings.items()
        ])  # fmt: skip
    for gclid in ("g-late", "g-half-past"):  # g-half-past too: on a day it is not asked for
        reporting.add_click(CUSTOMER, gclid, midnight.date() - timedelta(days=1),
                            (8, "Generic"), (81, "CRM"), "crm software", "EXACT")  # fmt: skip

    [read] = read_clicks(store, mapping(ads, oauth, tls), SETTINGS, NOW)
    assert (read.asked, read.resolved, read.unknown) == (3, 1, 2)
    days = [q.split("segments.date = '")[1][:10] for q in reporting.queries
            if "FROM click_view" in q]  # fmt: skip
    assert days == [midnight.date().isoformat(), (midnight.date() - timedelta(days=1)).isoformat()]
    assert "g-half-past" not in [q for q in reporting.queries if "FROM click_view" in q][1]
    with store.connect() as conn:
        rows = {r.gclid: r for r in conn.execute(sa.select(gclid_clicks))}
    assert (rows["g-late"].keyword, rows["g-late"].day) == (
        "crm software",
        midnight.date() - timedelta(days=1),
    )
    assert rows["g-gone"].campaign is None and rows["g-gone"].day == midnight.date()
    assert rows["g-half-past"].campaign is None


def test_meta_insights_paged_incremental_and_restated(
    meta: MetaInsightsEmulator, store: Engine
) -> None:
    meta.max_page = 2
    for n in range(5):
        meta.add_day(ACCOUNT, TODAY - timedelta(days=n), "9", "Retargeting", f"1{n}.25", n, 10)
    meta.add_day(ACCOUNT, TODAY - timedelta(days=1), "10", "Prospecting", "3.10", 2, 30)
    config = mapping(None, None, None, meta)

    [read] = read_spend(store, config, SETTINGS, "meta", NOW, days=4)
    assert (read.first, read.last, read.rows) == (TODAY - timedelta(days=3), TODAY, 5)
    pages = meta.insight_requests
    assert len(pages) == 3 and "after" in pages[1]
    assert pages[0]["level"] == "campaign" and "access_token" not in pages[0]
    rows = stored(store, "meta")
    assert rows[(TODAY - timedelta(days=1), "Prospecting", "", "")] == (
        Decimal("3.10"), "USD", 2, "10"
    )  # fmt: skip
    assert (TODAY - timedelta(days=4), "Retargeting", "", "") not in rows

    meta.add_day(ACCOUNT, TODAY, "9", "Retargeting", "99.00", 1, 1)  # restated
    meta.remove_day(ACCOUNT, TODAY - timedelta(days=1), "10")
    read_spend(store, config, SETTINGS, "meta", NOW, days=4)
    rows = stored(store, "meta")
    assert rows[(TODAY, "Retargeting", "", "")][0] == Decimal("99")
    assert (TODAY - timedelta(days=1), "Prospecting", "", "") not in rows


def test_meta_invalid_token_is_a_permanent_error(meta: MetaInsightsEmulator, store: Engine) -> None:
    bad = SETTINGS.model_copy(update={"meta_access_token": SecretStr("wrong")})
    with pytest.raises(PermanentError, match="META_190"):
        read_spend(store, mapping(None, None, None, meta), bad, "meta", NOW)
    assert stored(store, "meta") == {}


def test_cli_import_spend_from_meta_and_argument_errors(
    meta: MetaInsightsEmulator, tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from revsync.cli import app

    config = tmp_path / "revsync.yaml"
    config.write_text(
        "sources: []\ndestinations:\n  - name: fb\n    type: meta\n    pixel_id: '42'\n"
        f"    ad_account_id: '{ACCOUNT}'\n    graph_url: {meta.url}\n"
    )
    where = ["-c", str(config), "--database-url", f"sqlite:///{tmp_path / 'revsync.db'}"]
    runner = CliRunner()
    env = {"REVSYNC_META_ACCESS_TOKEN": TOKEN}
    result = runner.invoke(app, ["import", "spend", "--from", "meta", *where], env=env)
    assert result.exit_code == 0, result.output
    assert f"meta {ACCOUNT}: 0 spend rows" in result.stdout
    assert meta.insight_requests[0]["level"] == "campaign"
    both = runner.invoke(app, ["import", "spend", "x.csv", "--from", "meta", *where], env=env)
    assert both.exit_code == 2
    refused = runner.invoke(app, ["import", "spend", "--from", "meta", *where],
                            env={"REVSYNC_META_ACCESS_TOKEN": "wrong"})  # fmt: skip
    assert refused.exit_code == 1 and "META_190" in refused.output and "wrong" not in (
        refused.output
    )  # fmt: skip
    no_google = runner.invoke(app, ["import", "clicks", *where], env=env)
    assert no_google.exit_code == 2 and "has no google_ads destination" in no_google.output


def test_a_sync_reads_spend_and_clicks_when_due_and_a_failing_platform_is_a_warning(
    ads: GoogleAdsEmulator, oauth: OAuthEmulator, tls: TlsFiles, meta: MetaInsightsEmulator,
    store: Engine,
) -> None:  # fmt: skip
    """With ``reports.spend_from`` and ``resolve_clicks`` a sync (and so the worker) reads
    both platforms' spend and resolves new gclids; within ``read_every_hours`` of the last
    full pass it reads nothing; a platform that fails is a warning, the rest is read and
    the next run reads again."""
    from revsync.sync.job import SyncJob

    reporting = AdsReporting(ads)
    yesterday = TODAY - timedelta(days=1)
    reporting.add_campaign_day(CUSTOMER, yesterday, 7, "Brand", 12_000_000, 10, 100)
    meta.add_day(ACCOUNT, yesterday, "9", "Retargeting", "10.25", 1, 10)
    with store.begin() as conn:
        conn.execute(sa.insert(visitors), [{"id": "v", "first_seen": NOW, "last_seen": NOW}])
        conn.execute(sa.insert(touchpoints), [{
            "id": "t", "visitor_id": "v", "occurred_at": NOW - timedelta(days=5),
            "channel": "Paid Search", "gclid": "g-known"}])  # fmt: skip
    reporting.add_click(CUSTOMER, "g-known", TODAY - timedelta(days=5), (8, "Generic"),
                        (81, "CRM"), "crm software", "EXACT")  # fmt: skip
    base = mapping(ads, oauth, tls, meta)
    reads = {"spend_from": ["google_ads", "meta"], "resolve_clicks": True, "read_every_hours": 6}
    config = base.model_copy(update={"reports": base.reports.model_copy(update=reads)})

    def sync(hours: int, settings: Settings = SETTINGS) -> Any:
        at = NOW + timedelta(hours=hours)
        return SyncJob(store, config, [], [], clock=lambda: at, settings=settings).run()

    first = sync(0)
    assert (first.status, first.warnings) == ("ok", [])
    assert first.platform_reads == [
        f"google_ads {CUSTOMER}: 1 spend rows for {TODAY - timedelta(days=29)}..{TODAY}",
        f"meta {ACCOUNT}: 1 spend rows for {TODAY - timedelta(days=29)}..{TODAY}",
        "google_ads clicks: 1 gclids asked, 1 resolved, 0 unknown to Google",
    ]
    assert set(stored(store, "google_ads")) == {(yesterday, "Brand", "", "")}
    assert set(stored(store, "meta")) == {(yesterday, "Retargeting", "", "")}
    asked = (len(reporting.queries), len(meta.insight_requests))

    assert sync(1).platform_reads == []  # within 6 hours of the last pass
    assert (len(reporting.queries), len(meta.insight_requests)) == asked

    reporting.add_campaign_day(CUSTOMER, TODAY, 7, "Brand", 1_000_000, 1, 10)
    bad = SETTINGS.model_copy(update={"meta_access_token": SecretStr("wrong")})
    failing = sync(7, bad)
    assert failing.status == "ok" and len(failing.warnings) == 1
    assert failing.warnings[0].startswith("spend from meta: ") and "META_190" in (
        failing.warnings[0]
    )  # fmt: skip
    assert "wrong" not in failing.warnings[0]
    assert (TODAY, "Brand", "", "") in stored(store, "google_ads")  # the rest was read
    again = sync(8)  # the failed pass left the mark: read again an hour later
    assert [line.split(":")[0] for line in again.platform_reads] == [
        f"google_ads {CUSTOMER}", f"meta {ACCOUNT}", "google_ads clicks"
    ]  # fmt: skip
    assert sync(9).platform_reads == []
