"""SalesforceDealSource with the real simple-salesforce over TLS against the emulator."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from simple_salesforce.exceptions import SalesforceGeneralError
from sqlalchemy import Engine

from revsync.collect.importer import import_identities, import_touchpoints
from revsync.config.destinations import GoogleAdsDestination
from revsync.config.mapping import RevsyncConfig, SalesforceSource
from revsync.config.settings import Settings
from revsync.destinations.pii import hash_person
from revsync.domain import DealStatus
from revsync.errors import ConfigError, PermanentError, TransientError
from revsync.sources.base import DealPage
from revsync.sources.salesforce import SalesforceDealSource
from revsync.store.engine import open_store
from revsync.sync.factory import build_destinations, build_sources
from revsync.sync.job import SyncJob
from revsync.sync.summary import RunSummary
from tests.emulators.salesforce import SalesforceEmulator
from tests.emulators.tls import TlsFiles

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
PRIVATE_PEM = KEY.private_bytes(
    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
).decode()
SETTINGS = Settings(
    salesforce_client_id="cid",
    salesforce_client_secret="shh-secret",
    salesforce_refresh_token="rt-secret",
    salesforce_private_key=PRIVATE_PEM,
    salesforce_username="ops@example.com",
)
CUSTOM = {obj: {"GCLID__c": "string"} for obj in ("Opportunity", "Contact", "Lead")}


def start(tls: TlsFiles, **options: Any) -> SalesforceEmulator:
    emu = SalesforceEmulator(tls, custom_fields=CUSTOM, page_size=3, **options)
    emu.set_clock(T0)
    emu.start()
    emu.add_connected_app(
        "cid", client_secret="shh-secret", refresh_token="rt-secret", username="ops@example.com",
        jwt_public_key=KEY.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo),
    )  # fmt: skip
    return emu


@pytest.fixture
def emu(tls: TlsFiles) -> Iterator[SalesforceEmulator]:
    emulator = start(tls)
    yield emulator
    emulator.stop()


def config(emu: SalesforceEmulator, tls: TlsFiles, **overrides: Any) -> SalesforceSource:
    block = {
        "type": "salesforce", "name": "sf", "instance_url": emu.base_url,
        "token_url": f"{emu.base_url}/services/oauth2/token", "ca_bundle": str(tls.ca_cert),
        "currency": "USD", "page_size": 2, "bulk_poll_seconds": 0,
        "retry_initial_wait_seconds": 0.01, "timezone": "UTC", "close_time": "12:00",
        "click_id_fields": {"gclid": "GCLID__c"},
        "contact_click_id_fields": {"gclid": "GCLID__c"},
    }  # fmt: skip
    return SalesforceSource.model_validate(block | overrides)


def source(
    emu: SalesforceEmulator, tls: TlsFiles, settings: Settings = SETTINGS, **overrides: Any
) -> SalesforceDealSource:
    return SalesforceDealSource(config(emu, tls, **overrides), settings, "US")


def read(src: SalesforceDealSource, watermark: str | None = None) -> list[DealPage]:
    pages = list(src.pages(watermark, T0))
    src.close()
    return pages


def seed(emu: SalesforceEmulator, count: int, start: datetime = T0, **fields: Any) -> list[str]:
    """Won deals an hour apart, each with a primary contact (email, phone, gclid)."""
    ids = []
    for i in range(count):
        emu.set_clock(start + timedelta(hours=i))
        values = {"Amount": 100.0 * (i + 1), "CloseDate": "2026-02-27",
                  "StageName": "Closed Won", "GCLID__c": f"opp-gclid-{i:04d}"} | fields  # fmt: skip
        opp = emu.add("Opportunity", **values)
        contact = emu.add("Contact", LastName=f"C{i}", Email=f"p{i}@example.com",
                          Phone="(415) 555-0100", GCLID__c=f"contact-gclid-{i:04d}")  # fmt: skip
        emu.add("OpportunityContactRole", OpportunityId=opp, ContactId=contact, IsPrimary=True)
        ids.append(opp)
    return ids


def deal_ids(pages: list[DealPage]) -> list[str]:
    return [d.id for p in pages for d in p.deals]


def test_pages_carry_deals_contacts_and_ordered_watermarks(
    emu: SalesforceEmulator, tls: TlsFiles
) -> None:
    ids = seed(emu, 5, Type="New Business", LeadSource="Web")
    lost = emu.add("Opportunity", Amount=50.0, StageName="Closed Lost")
    opened = emu.add("Opportunity", StageName="Prospecting")
    extra = emu.add("Contact", LastName="X", Email="x@example.com")
    emu.add("OpportunityContactRole", OpportunityId=ids[0], ContactId=extra, Role="Influencer")
    pages = read(source(emu, tls, fields=["type"], pipeline_field="LeadSource"))
    assert [len(p.deals) for p in pages] == [2, 2, 2, 1]
    assert deal_ids(pages) == [*ids, lost, opened]
    stamps = [p.watermark for p in pages]
    assert stamps == sorted(stamps) and stamps[-1] == emu.now().isoformat()
    assert not any(p.budget_exhausted or p.quarantined for p in pages)
    first = pages[0].deals[0]
    assert (first.status, first.amount, first.currency) == (DealStatus.WON, Decimal("100.0"), "USD")
    assert first.close_at == datetime(2026, 2, 27, 12, tzinfo=UTC)
    assert first.click_ids.gclid == "opp-gclid-0000" and first.modified_at == T0
    assert (first.stage, first.pipeline, first.fields) == (
        "Closed Won",
        "Web",
        {"type": "New Business"},
    )
    assert [c.is_primary for c in first.contacts] == [True, False]
    primary = first.contacts[0]
    assert primary.hashes == hash_person("p0@example.com", "+14155550100")
    assert primary.click_ids.gclid == "contact-gclid-0000"
    assert [d.status for d in pages[-1].deals + pages[-2].deals[1:]] == [
        DealStatus.OPEN,
        DealStatus.LOST,
    ]


def test_second_read_from_watermark_yields_changes_and_the_overlap(
    emu: SalesforceEmulator, tls: TlsFiles
) -> None:
    ids = seed(emu, 5)
    watermark = read(source(emu, tls))[-1].watermark
    emu.advance(hours=1)
    emu.update("Opportunity", ids[1], Amount=999.0)
    emu.delete("Opportunity", ids[2])
    new = seed(emu, 1, start=emu.now() + timedelta(minutes=30))[0]
    again = read(source(emu, tls), watermark)
    changed = {d.id: d for p in again for d in p.deals}
    # ids[4] sits at the watermark: re-read by the overlap, an idempotent upsert.
    assert list(changed) == [ids[4], ids[1], ids[2], new]
    assert changed[ids[1]].amount == Decimal("999.0")
    assert changed[ids[2]].status is DealStatus.LOST  # deleted: its uploads get retracted
    assert changed[ids[2]].fields == {"IsDeleted": "true"}
    assert deal_ids(read(source(emu, tls), again[-1].watermark)) == [new]


def test_edit_made_between_pages_is_read_on_the_next_run(
    emu: SalesforceEmulator, tls: TlsFiles
) -> None:
    ids = seed(emu, 5)
    pages = source(emu, tls).pages(None, T0)
    first = next(pages)
    emu.advance(hours=1)
    emu.update("Opportunity", ids[0], Amount=1.0)  # already read
    emu.update("Opportunity", ids[3], Amount=2.0)  # not read yet
    rest = list(pages)
    assert deal_ids([first, *rest]) == ids
    again = read(source(emu, tls), rest[-1].watermark)
    amounts = {d.id: d.amount for p in again for d in p.deals}
    assert {ids[0]: Decimal("1.0"), ids[3]: Decimal("2.0")}.items() <= amounts.items()


@pytest.mark.parametrize("flow", ["refresh_token", "jwt", "client_credentials"])
def test_each_oauth_flow_reads_deals(emu: SalesforceEmulator, tls: TlsFiles, flow: str) -> None:
    ids = seed(emu, 1)
    assert deal_ids(read(source(emu, tls, auth=flow))) == ids
    assert emu.count("POST", "/services/oauth2/token") == 1


def test_missing_or_refused_credentials(emu: SalesforceEmulator, tls: TlsFiles) -> None:
    with pytest.raises(ConfigError) as missing:
        source(emu, tls, Settings(salesforce_client_id="cid"), auth="jwt")
    assert missing.value.problems == [
        "source 'sf' (auth: jwt) needs REVSYNC_SALESFORCE_USERNAME",
        "source 'sf' (auth: jwt) needs REVSYNC_SALESFORCE_PRIVATE_KEY",
    ]
    wrong = Settings(salesforce_client_id="cid", salesforce_refresh_token="stolen-token-value")
    with pytest.raises(PermanentError) as refused:
        read(source(emu, tls, wrong))
    assert "invalid_grant" in str(refused.value) and "stolen" not in str(refused.value)
    with pytest.raises(ConfigError, match="not a PEM"):
        read(source(emu, tls, Settings(salesforce_client_id="cid", salesforce_username="u",
                                       salesforce_private_key="nope"), auth="jwt"))  # fmt: skip


def test_expired_session_mid_run_reauthenticates_once(
    emu: SalesforceEmulator, tls: TlsFiles
) -> None:
    ids = seed(emu, 5)
    pages = source(emu, tls).pages(None, T0)
    first = next(pages)
    emu.expire_sessions()
    assert deal_ids([first, *pages]) == ids
    assert emu.count("POST", "/oauth2/token") == 2
    expired = [{"errorCode": "INVALID_SESSION_ID", "message": "Session expired or invalid"}]
    emu.inject_fault(401, expired, path_contains="/query", times=2)
    with pytest.raises(PermanentError, match="INVALID_SESSION_ID"):
        read(source(emu, tls))


@pytest.mark.parametrize("bulk", [False, True], ids=["rest", "bulk"])
def test_outage_mid_read_is_retried_and_the_read_resumes(
    emu: SalesforceEmulator, tls: TlsFiles, bulk: bool, caplog: pytest.LogCaptureFixture
) -> None:
    """503s and a dropped connection while the opportunities stream: tried again with
    backoff, the stream resumes behind the last record it yielded, no deal is lost or
    read twice, and the log says what happened without a token."""
    ids = seed(emu, 7)
    src = source(emu, tls, bulk_threshold=1 if bulk else 50_000)
    unavailable = [{"errorCode": "SERVER_UNAVAILABLE", "message": "down for maintenance"}]
    if bulk:  # a Bulk read has all its results before the first page: fail fetching them
        emu.inject_fault(503, unavailable, path_contains="/results", times=2)
    pages = src.pages(None, T0)
    first = next(pages)
    if not bulk:  # REST pages arrive 2,000 records a batch: fail the next SOQL call
        emu.inject_fault(503, unavailable, path_contains="/query", times=2)
    rest = list(pages)
    src.close()
    read_ids = deal_ids([first, *rest])
    assert sorted(read_ids) == sorted(ids) and len(read_ids) == len(set(read_ids))
    retries = [r.getMessage() for r in caplog.records if "try " in r.getMessage()]
    assert len(retries) == 2 and "HTTP 503 SERVER_UNAVAILABLE" in retries[0]
    assert "access-token" not in caplog.text and "Bearer" not in caplog.text


def test_outage_longer_than_the_tries_ends_the_read_with_a_transient_error(
    emu: SalesforceEmulator, tls: TlsFiles
) -> None:
    seed(emu, 3)
    emu.inject_fault(503, [{"errorCode": "SERVER_UNAVAILABLE", "message": "down"}],
                     path_contains="/query", times=10)  # fmt: skip
    with pytest.raises(TransientError, match="HTTP 503 SERVER_UNAVAILABLE"):
        read(source(emu, tls, max_attempts=3))
    assert emu.count("GET", "/query") == 3


def test_a_500_on_a_contacts_query_is_tried_again(emu: SalesforceEmulator, tls: TlsFiles) -> None:
    ids = seed(emu, 2)
    emu.inject_fault(500, [{"errorCode": "UNKNOWN_EXCEPTION", "message": "boom"}],
                     path_contains="/query", times=1)  # fmt: skip
    assert deal_ids(read(source(emu, tls))) == ids


def test_request_limit_exceeded_stops_cleanly_and_resumes(tls: TlsFiles) -> None:
    emu = start(tls, api_limit=5)
    try:
        ids = seed(emu, 5)
        # describe, count, query, contacts = 4 calls; page 2 runs out mid-page.
        pages = read(source(emu, tls, api_budget_share=1.0))
        assert [len(p.deals) for p in pages] == [2, 0]
        assert pages[-1].budget_exhausted and pages[-1].watermark == pages[0].watermark
        emu.api_usage, emu.api_limit = 0, 100
        resumed = read(source(emu, tls, api_budget_share=1.0), pages[-1].watermark)
        assert set(ids[2:]) <= set(deal_ids(resumed))
    finally:
        emu.stop()


def test_budget_share_finishes_the_page_and_stops(tls: TlsFiles) -> None:
    emu = start(tls, api_limit=8)
    try:
        seed(emu, 5)
        pages = read(source(emu, tls, api_budget_share=0.5))
        assert [(len(p.deals), p.budget_exhausted) for p in pages] == [(2, True)]
        assert emu.api_usage == 4
    finally:
        emu.stop()


def test_multi_currency_org_uses_each_records_currency(tls: TlsFiles) -> None:
    emu = start(tls, multi_currency=True, currency="EUR")
    try:
        eur = seed(emu, 1)[0]
        usd = emu.add("Opportunity", StageName="Closed Won", Amount=6.0, CurrencyIsoCode="USD")
        deals = {d.id: d for p in read(source(emu, tls, currency=None)) for d in p.deals}
        assert (deals[eur].currency, deals[usd].currency) == ("EUR", "USD")
    finally:
        emu.stop()


def test_single_currency_org_uses_the_configured_currency(
    emu: SalesforceEmulator, tls: TlsFiles
) -> None:
    seed(emu, 1)
    assert {d.currency for p in read(source(emu, tls, currency="gbp")) for d in p.deals} == {"GBP"}
    with pytest.raises(ConfigError, match="single-currency"):
        read(source(emu, tls, currency=None))


def test_malformed_records_are_quarantined_and_the_rest_syncs(tls: TlsFiles) -> None:
    emu = start(tls, multi_currency=True)
    try:
        good = seed(emu, 1)[0]
        no_amount = emu.add("Opportunity", StageName="Closed Won")
        bad_currency = emu.add("Opportunity", StageName="Closed Won", Amount=1.0,
                               CurrencyIsoCode="XYZ")  # fmt: skip
        no_close = emu.add("Opportunity", StageName="Closed Won", Amount=1.0, CloseDate=None)
        bad_click = emu.add("Opportunity", StageName="Closed Won", Amount=1.0, GCLID__c="bad!")
        gone = emu.add("Contact", LastName="Gone", Email="gone@example.com")
        emu.add("OpportunityContactRole", OpportunityId=bad_click, ContactId=gone)
        emu.delete("Contact", gone)
        messy = emu.add(
            "Contact", LastName="M", Email="not-an-email", Phone="+14155550111", GCLID__c="x!"
        )
        emu.add("OpportunityContactRole", OpportunityId=bad_click, ContactId=messy)
        pages = read(source(emu, tls, currency=None, page_size=10))
    finally:
        emu.stop()
    assert deal_ids(pages) == [good, bad_click]
    problems = {(q.kind, q.record_id, q.field): q for p in pages for q in p.quarantined}
    assert set(problems) == {
        ("deal", no_amount, "Amount"), ("deal", bad_currency, "CurrencyIsoCode"),
        ("deal", no_close, "CloseDate"), ("deal", bad_click, "GCLID__c"),
        ("contact", bad_click, "ContactId"), ("contact", bad_click, "Contact.Email"),
        ("contact", bad_click, "Contact.GCLID__c"),
    }  # fmt: skip
    assert problems[("contact", bad_click, "ContactId")].detail == {"contact_id": gone}
    kept = pages[0].deals[1]
    assert kept.click_ids.gclid is None
    assert [c.crm_id for c in kept.contacts] == [messy]
    assert kept.contacts[0].hashes == hash_person(None, "+14155550111")


def test_bulk_api_above_the_threshold(emu: SalesforceEmulator, tls: TlsFiles) -> None:
    ids = seed(emu, 5)
    emu.delete("Opportunity", ids[4])
    pages = read(source(emu, tls, bulk_threshold=3))
    # 5 changes over 4 hours, about 3 a window: [start, T0+2h) and [T0+2h, end), one Bulk
    # job each; a COUNT() and the newest/oldest SystemModstamp chose them.
    assert emu.count("POST", "/jobs/query") == 2 and emu.count("GET", "/queryAll") == 3
    assert sorted(deal_ids(pages)) == sorted(ids)
    middle = (T0 + timedelta(hours=2)).isoformat()
    assert [(len(p.deals), p.watermark) for p in pages] == [
        (2, None),
        (0, middle),
        (2, middle),
        (1, middle),
        (0, emu.now().isoformat()),
    ]
    deals = {d.id: d for p in pages for d in p.deals}
    assert deals[ids[0]].amount == Decimal("100.0") and deals[ids[0]].contacts
    assert deals[ids[4]].status is DealStatus.LOST
    assert deals[ids[1]].click_ids.gclid == "opp-gclid-0001"


def test_a_bulk_backfill_cut_short_resumes_at_the_window_it_was_in(tls: TlsFiles) -> None:
    emu = start(tls)
    try:
        ids = seed(emu, 9)  # T0 .. T0+8h: windows [-, T0+2:40), [T0+2:40, T0+5:20), [T0+5:20, -)
        pages = source(emu, tls, bulk_threshold=3, api_budget_share=1.0).pages(None, T0)
        first = [next(pages), next(pages)]
        edge = (T0 + timedelta(hours=2, minutes=40)).isoformat()
        assert [(len(p.deals), p.watermark) for p in first] == [(2, None), (1, None)]
        assert next(pages).watermark == edge  # the first window is done
        emu.api_limit = emu.api_usage  # the daily API budget runs out in the second window
        rest = list(pages)
        assert [(p.deals, p.watermark, p.budget_exhausted) for p in rest] == [((), edge, True)]
        assert sorted(deal_ids(first)) == sorted(ids[:3])

        emu.api_limit = 1_000  # the next day
        resumed = read(source(emu, tls, bulk_threshold=3), edge)
        # From the window's edge minus the 10-minute overlap: the first window is not read again.
        assert sorted(deal_ids(resumed)) == sorted(ids[3:])
        assert resumed[-1].watermark == emu.now().isoformat()
    finally:
        emu.stop()


def test_bulk_read_resumes_after_an_expired_session(emu: SalesforceEmulator, tls: TlsFiles) -> None:
    ids = seed(emu, 5)
    expired = [{"errorCode": "INVALID_SESSION_ID", "message": "Session expired or invalid"}]
    emu.inject_fault(401, expired, path_contains="/results")
    pages = read(source(emu, tls, bulk_threshold=3))
    assert sorted(deal_ids(pages)) == sorted(ids)
    # two windows, the first one's job created again after the session was renewed
    assert emu.count("POST", "/jobs/query") == 3 and emu.count("POST", "/oauth2/token") == 2


def test_lead_click_ids_fill_the_contacts_gaps(emu: SalesforceEmulator, tls: TlsFiles) -> None:
    opp = emu.add("Opportunity", StageName="Closed Won", Amount=5.0)
    contact = emu.add("Contact", LastName="L", Email="l@example.com")
    emu.add("OpportunityContactRole", OpportunityId=opp, ContactId=contact, IsPrimary=True)
    emu.add("Lead", LastName="L", IsConverted=True, ConvertedContactId=contact,
            GCLID__c="lead-gclid-0001")  # fmt: skip
    pages = read(source(emu, tls, lead_click_id_fields={"gclid": "GCLID__c"}))
    assert pages[0].deals[0].contacts[0].click_ids.gclid == "lead-gclid-0001"


def test_close_date_is_placed_in_the_account_time_zone(
    emu: SalesforceEmulator, tls: TlsFiles
) -> None:
    seed(emu, 1)
    src = source(emu, tls, timezone="America/Los_Angeles", close_time="17:30")
    deal = read(src)[0].deals[0]
    assert deal.close_at == datetime(2026, 2, 28, 1, 30, tzinfo=UTC)  # PST is UTC-8


def web_visit_and_sync(
    emu: SalesforceEmulator, tls: TlsFiles, tmp_path: Path, gclid: str, email: str
) -> tuple[Engine, Callable[[datetime], RunSummary]]:
    """A store holding one web visit (a Google click, consent granted) by ``email``, and a
    sync of the org to a Google file destination at a given time."""
    engine = open_store(f"sqlite:///{tmp_path / 'revsync.db'}")
    (tmp_path / "tp.csv").write_text(
        "visitor_id,occurred_at,landing_url,consent_ad_user_data\n"
        f"v1,2026-02-20T09:00:00Z,https://x.com/?gclid={gclid},granted\n"
    )
    (tmp_path / "leads.csv").write_text(
        f"visitor_id,observed_at,email\nv1,2026-02-20T09:05:00Z,{email}\n"
    )
    import_touchpoints(engine, tmp_path / "tp.csv")
    import_identities(engine, tmp_path / "leads.csv")
    mapping = RevsyncConfig(
        sources=[config(emu, tls)],
        matching={"default_phone_region": "US"},
        privacy={"unknown_consent": "grant"},  # a CRM click ID alone states no consent
        destinations=[GoogleAdsDestination(
            name="gads", type="google_ads", transport="file", output_dir=tmp_path / "out",
            customer_id="1234567890", conversion_action="42")],
    )  # fmt: skip

    def run(now: datetime) -> RunSummary:
        clock = lambda: now  # noqa: E731
        job = SyncJob(engine, mapping, build_sources(mapping, SETTINGS),
                      build_destinations(mapping, SETTINGS, clock), clock=clock)  # fmt: skip
        return job.run()

    return engine, run


def test_sync_job_twice_plans_nothing_new(
    emu: SalesforceEmulator, tls: TlsFiles, tmp_path: Path
) -> None:
    seed(emu, 3)
    engine, run = web_visit_and_sync(emu, tls, tmp_path, "CjwGclid0001", "p1@example.com")
    first = run(emu.now() + timedelta(hours=1))
    assert first.status == "ok" and first.deals_read == {"sf": 3}
    assert dict(first.planned) == {"gads": 3}  # one CRM or web click credited per deal
    lines = (tmp_path / "out" / "gads.google_ads.jsonl").read_text().splitlines()
    sent = [c for line in lines for c in json.loads(line)["body"]["conversions"]]
    assert sum(c["conversion_value"] for c in sent) == 600
    assert len(sent) == 3 and all(c["gclid"] for c in sent)
    second = run(emu.now() + timedelta(hours=2))
    assert second.status == "ok" and sum(second.planned.values()) == 0
    assert second.deals_read["sf"] >= 1  # the overlap re-reads the newest deal
    assert (tmp_path / "out" / "gads.google_ads.jsonl").read_text().splitlines() == lines
    engine.dispose()


def test_which_failures_are_tried_again(emu: SalesforceEmulator, tls: TlsFiles) -> None:
    """5xx answers, refused connections and timeouts are transient; certificate problems
    and 4xx answers are not; the last allowed try re-raises."""
    src = source(emu, tls, max_attempts=3, retry_initial_wait_seconds=0)
    url = f"{emu.base_url}/services/data/v59.0/query"
    for transient in (
        SalesforceGeneralError(url, 503, "Opportunity", [{"errorCode": "SERVER_UNAVAILABLE"}]),
        requests.ConnectionError("refused"),
        requests.Timeout("read timed out"),
    ):
        src._back_off(transient, 1)  # waits, then lets the caller try again
        with pytest.raises(type(transient)):
            src._back_off(transient, 3)
    for permanent in (
        requests.exceptions.SSLError("certificate verify failed"),
        SalesforceGeneralError(url, 400, "Opportunity", [{"errorCode": "MALFORMED_QUERY"}]),
    ):
        with pytest.raises(type(permanent)):
            src._back_off(permanent, 1)


# --- contact roles added after a deal was read (issue #12) -----------------------------------


def late_role(emu: SalesforceEmulator, opp: str, email: str = "late@example.com") -> str:
    """A contact a rep links to ``opp`` now; the Opportunity's SystemModstamp stays put."""
    before = emu.get("Opportunity", opp)["SystemModstamp"]
    contact = emu.add("Contact", LastName="Late", Email=email)
    emu.add("OpportunityContactRole", OpportunityId=opp, ContactId=contact, IsPrimary=True,
            Role="Decision Maker")  # fmt: skip
    assert emu.get("Opportunity", opp)["SystemModstamp"] == before
    return contact


@pytest.mark.parametrize("bulk", [False, True], ids=["rest", "bulk"])
def test_a_contact_role_added_after_the_deal_was_read_brings_the_deal_back(
    emu: SalesforceEmulator, tls: TlsFiles, bulk: bool
) -> None:
    late = emu.add("Opportunity", StageName="Closed Won", Amount=500.0, CloseDate="2026-02-27")
    later = seed(emu, 2, start=T0 + timedelta(hours=1))  # moves the watermark past the overlap
    options: dict[str, Any] = {"bulk_threshold": 1} if bulk else {}
    first = read(source(emu, tls, **options))
    assert {d.id: d.contacts for p in first for d in p.deals}[late] == ()
    watermark = first[-1].watermark
    assert watermark == (T0 + timedelta(hours=2)).isoformat()

    emu.set_clock(T0 + timedelta(hours=3))
    emu.update("Opportunity", later[0], Amount=7.0)  # two changes: Bulk reads them, if asked
    emu.set_clock(T0 + timedelta(hours=4))
    contact = late_role(emu, late)
    jobs = emu.count("POST", "/jobs/query")
    again = read(source(emu, tls, **options), watermark)

    # The role's deal comes first, on pages that keep the incoming watermark; then the
    # changed deals; then the watermark moves to the role's stamp, the newest read.
    assert again[0].deals[0].id == late and again[0].watermark == watermark
    assert sorted(deal_ids(again)) == sorted([late, *later]) and len(deal_ids(again)) == 3
    deal = again[0].deals[0]
    assert (deal.status, deal.amount, deal.modified_at) == (DealStatus.WON, Decimal("500.0"), T0)
    assert [(c.crm_id, c.is_primary) for c in deal.contacts] == [(contact, True)]
    assert deal.contacts[0].hashes == hash_person("late@example.com", None)
    assert again[-1].watermark == (T0 + timedelta(hours=4)).isoformat()
    assert emu.count("POST", "/jobs/query") - jobs == (2 if bulk else 0)  # the roles: REST
    # The next run re-reads it only inside the overlap, like any change at the watermark.
    assert deal_ids(read(source(emu, tls), again[-1].watermark)) == [late]
    emu.set_clock(T0 + timedelta(hours=5))
    emu.update("Opportunity", later[1], Amount=8.0)
    assert deal_ids(read(source(emu, tls), (T0 + timedelta(hours=5)).isoformat())) == [later[1]]


def test_a_removed_contact_role_is_seen_and_a_deal_is_read_once_per_run(
    emu: SalesforceEmulator, tls: TlsFiles
) -> None:
    ids = seed(emu, 3)
    wrong = emu.add("Contact", LastName="Wrong", Email="wrong@example.com")
    role = emu.add("OpportunityContactRole", OpportunityId=ids[0], ContactId=wrong)
    watermark = (T0 + timedelta(hours=2)).isoformat()
    emu.set_clock(T0 + timedelta(hours=3))
    emu.delete("OpportunityContactRole", role)  # a rep removes the wrong contact
    emu.update("Opportunity", ids[1], Amount=1.0)  # edited and given a contact: read once
    late_role(emu, ids[1])
    again = read(source(emu, tls), watermark)
    assert deal_ids(again) == [ids[0], ids[2], ids[1]]
    deals = {d.id: d for p in again for d in p.deals}
    assert [c.hashes for c in deals[ids[0]].contacts] == [
        hash_person("p0@example.com", "+14155550100")
    ]
    assert len(deals[ids[1]].contacts) == 2 and deals[ids[1]].amount == Decimal("1.0")


def test_the_api_budget_running_out_on_the_roles_deals_keeps_the_watermark(
    tls: TlsFiles,
) -> None:
    emu = start(tls, api_limit=100)
    try:
        late = emu.add("Opportunity", StageName="Closed Won", Amount=5.0)
        seed(emu, 1, start=T0 + timedelta(hours=1))
        watermark = (T0 + timedelta(hours=1)).isoformat()
        emu.set_clock(T0 + timedelta(hours=2))
        late_role(emu, late)
        # describe, the roles query, their deals and their contacts: 4 calls
        emu.api_usage, emu.api_limit = 0, 4
        pages = read(source(emu, tls, api_budget_share=1.0), watermark)
        assert [(deal_ids([p]), p.watermark, p.budget_exhausted) for p in pages] == [
            ([late], watermark, True)
        ]
        emu.api_usage, emu.api_limit = 0, 100  # the next day: the same role is found again
        assert deal_ids(read(source(emu, tls), watermark))[0] == late
    finally:
        emu.stop()


def test_sync_job_plans_a_deal_whose_contact_was_added_after_it_was_read(
    emu: SalesforceEmulator, tls: TlsFiles, tmp_path: Path
) -> None:
    late = emu.add("Opportunity", StageName="Closed Won", Amount=300.0, CloseDate="2026-02-27")
    seed(emu, 1, start=T0 + timedelta(hours=1))  # p0@example.com, a CRM gclid
    engine, run = web_visit_and_sync(emu, tls, tmp_path, "CjwLateGclid01", "late@example.com")

    def sent() -> list[dict[str, Any]]:
        lines = (tmp_path / "out" / "gads.google_ads.jsonl").read_text().splitlines()
        return [c for line in lines for c in json.loads(line)["body"]["conversions"]]

    first = run(T0 + timedelta(hours=2))
    assert first.status == "ok" and first.deals_read == {"sf": 2}
    assert dict(first.planned) == {"gads": 1}  # the late deal has no contact: nothing matched
    assert [c["gclid"] for c in sent()] == ["opp-gclid-0000"]

    emu.set_clock(T0 + timedelta(hours=3))
    late_role(emu, late)
    second = run(T0 + timedelta(hours=4))
    assert second.status == "ok" and dict(second.planned) == {"gads": 1}
    assert [(c["gclid"], c["conversion_value"]) for c in sent()[1:]] == [("CjwLateGclid01", 300)]
    third = run(T0 + timedelta(hours=5))
    assert third.status == "ok" and sum(third.planned.values()) == 0
    engine.dispose()


def test_account_creation_time_and_stage_history_from_opportunity_history(
    emu: SalesforceEmulator, tls: TlsFiles
) -> None:
    """AccountId and CreatedDate come with the page; with stage_history, one query per page
    reads OpportunityHistory, which Salesforce writes on creation and each stage change."""
    emu.set_clock(T0 - timedelta(days=3))
    opp = emu.add("Opportunity", StageName="Prospecting", Amount=10.0, CloseDate="2026-02-27",
                  AccountId="001000000000001AAA")  # fmt: skip
    emu.set_clock(T0 - timedelta(days=2))
    emu.update("Opportunity", opp, StageName="Negotiation/Review")
    emu.update("Opportunity", opp, Amount=12.0)  # not a stage change: no history row
    emu.set_clock(T0 - timedelta(days=1))
    emu.update("Opportunity", opp, StageName="Closed Won")
    emu.set_clock(T0)
    before = emu.api_usage
    [deal] = [d for p in read(source(emu, tls, stage_history=True)) for d in p.deals]
    assert deal.account_id == "001000000000001AAA"
    assert deal.created_at == T0 - timedelta(days=3)
    assert deal.stage_history == (
        (T0 - timedelta(days=3), "Prospecting"),
        (T0 - timedelta(days=2), "Negotiation/Review"),
        (T0 - timedelta(days=1), "Closed Won"),
    )
    with_history = emu.api_usage - before
    before = emu.api_usage
    [plain] = [d for p in read(source(emu, tls)) for d in p.deals]
    assert plain.stage_history == () and with_history == emu.api_usage - before + 1
