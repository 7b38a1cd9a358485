"""HubSpotDealSource through the real hubspot-api-client against the HubSpot emulator."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import select

from revsync.config.destinations import GoogleAdsDestination
from revsync.config.mapping import HubSpotSource, RevsyncConfig
from revsync.config.settings import Settings
from revsync.destinations.pii import hash_person
from revsync.domain import Deal, DealStatus, Quarantined
from revsync.errors import ConfigError, PermanentError, TransientError
from revsync.sources.base import DealPage
from revsync.sources.hubspot import HubSpotDealSource
from revsync.store.engine import open_store
from revsync.store.schema import deal_stages
from revsync.sync.deal_writes import store_deals
from revsync.sync.factory import build_destinations, build_sources
from revsync.sync.job import SyncJob
from tests.emulators.hubspot import HubSpotEmulator, PropertyDef

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
TOKEN = "pat-test"
GCLID = "Cj0KCQiA-test-gclid_1"


@pytest.fixture
def emu() -> Iterator[HubSpotEmulator]:
    emulator = HubSpotEmulator(tokens={TOKEN}, search_per_second=None, burst_limit=None)
    emulator.set_clock(T0)
    with emulator:
        yield emulator


def config(emu: HubSpotEmulator, **overrides: Any) -> HubSpotSource:
    values: dict[str, Any] = {
        "type": "hubspot", "name": "hs", "host": emu.base_url, "searches_per_second": 1000,
        "retry_initial_wait_seconds": 0.01, "timeout_seconds": 5, **overrides,
    }  # fmt: skip
    return HubSpotSource(**values)


def source(emu: HubSpotEmulator, token: str = TOKEN, **overrides: Any) -> HubSpotDealSource:
    settings = Settings(hubspot_access_token=SecretStr(token))
    return HubSpotDealSource(config(emu, **overrides), settings, "US")


def read(src: HubSpotDealSource, watermark: str | None = None) -> list[DealPage]:
    return list(src.pages(watermark, T0))


def deals_of(pages: list[DealPage]) -> list[Deal]:
    return [d for p in pages for d in p.deals]


def problems_of(pages: list[DealPage]) -> set[tuple[str, str, str, str]]:
    return {(q.kind, q.record_id, q.field, q.reason) for p in pages for q in p.quarantined}


def seed(emu: HubSpotEmulator, count: int, start: datetime = T0, **props: Any) -> list[str]:
    """``count`` won deals modified one minute apart from ``start``."""
    ids = []
    for i in range(count):
        emu.set_clock(start + timedelta(minutes=i))
        ids.append(emu.add_deal(dealstage="closedwon", amount=str(100 + i), closedate=T0, **props))
    return ids


def search_bodies(emu: HubSpotEmulator) -> list[dict[str, Any]]:
    return [json.loads(r.body) for r in emu.requests if r.path.endswith("/deals/search")]


def test_pages_deals_with_contacts_in_modified_order(emu: HubSpotEmulator) -> None:
    alice = emu.add_contact(
        email=" Alice@Example.com",
        hs_google_click_id=GCLID,
        hs_facebook_click_id="IwAR-fbclid-1",
        hs_analytics_source="PAID_SEARCH",
    )
    bob = emu.add_contact(phone="(202) 555-0143")
    ids = seed(emu, 5)
    emu.set_clock(T0 + timedelta(minutes=10))
    emu.associate(ids[0], bob)
    emu.associate(ids[0], alice)
    emu.update(
        "deals", ids[1], deal_currency_code="EUR", hubspot_owner_id="77", dealstage="closedlost"
    )
    emu.update("deals", ids[2], dealstage="contractsent")

    pages = read(source(emu, page_size=2))

    assert [len(p.deals) for p in pages] == [2, 2, 1]
    order = [d.id for d in deals_of(pages)]  # ids[1] and ids[2] share a timestamp: any order
    assert order[:3] == [ids[0], ids[3], ids[4]] and set(order[3:]) == {ids[1], ids[2]}
    assert [p.watermark for p in pages] == [p.deals[-1].modified_at.isoformat() for p in pages]
    assert pages[-1].watermark == (T0 + timedelta(minutes=10)).isoformat()
    first, *_ = deals_of(pages)
    lost, open_ = sorted(deals_of(pages)[3:], key=lambda d: ids.index(d.id))
    assert (first.status, first.amount, first.currency, first.close_at) == (
        DealStatus.WON,
        Decimal(100),
        "USD",
        T0,
    )
    assert [(c.crm_id, c.is_primary) for c in first.contacts] == [(alice, True), (bob, False)]
    primary, other = first.contacts
    assert primary.hashes == hash_person("alice@example.com", None)
    assert (primary.click_ids.gclid, primary.click_ids.fbclid) == (GCLID, "IwAR-fbclid-1")
    assert other.hashes == hash_person(None, "+12025550143")
    assert first.fields == {"hs_analytics_source": "PAID_SEARCH"}
    assert (lost.status, lost.currency, lost.owner) == (DealStatus.LOST, "EUR", "77")
    assert open_.status is DealStatus.OPEN and open_.stage == "contractsent"
    body = search_bodies(emu)[0]
    assert body["sorts"] == [{"propertyName": "hs_lastmodifieddate", "direction": "ASCENDING"}]
    assert {
        "amount",
        "closedate",
        "deal_currency_code",
        "hs_is_closed_won",
        "hs_is_closed",
        "hubspot_owner_id",
    } <= set(body["properties"])
    assert problems_of(pages) == set()


def test_rewindows_before_the_result_cap(emu: HubSpotEmulator) -> None:
    emu.max_search_results = 50
    ids = seed(emu, 130)
    pages = read(source(emu, page_size=20))
    assert [d.id for d in deals_of(pages)] == ids
    assert all("after" not in b for b in search_bodies(emu))  # never an offset


def test_deals_sharing_one_timestamp_are_drained_by_id_past_the_cap(
    emu: HubSpotEmulator,
) -> None:
    emu.max_search_results = 50
    tied = [emu.add_deal(dealstage="closedwon", amount="1", closedate=T0) for _ in range(45)]
    later = seed(emu, 10, T0 + timedelta(hours=1))
    pages = read(source(emu, page_size=20))
    order = [d.id for d in deals_of(pages)]
    assert sorted(order[:45]) == sorted(tied) and order[45:] == later  # each deal once
    assert all("after" not in b for b in search_bodies(emu))
    tie_sorts = [b for b in search_bodies(emu) if b["sorts"][0]["propertyName"] == "hs_object_id"]
    assert tie_sorts and all(
        {f["operator"] for f in b["filterGroups"][0]["filters"]} <= {"EQ", "GT"} for b in tie_sorts
    )

    # More deals share one timestamp than one query may page through: all are read, and
    # the next run is not stuck either.
    emu.set_clock(T0 + timedelta(days=1))
    more = [emu.add_deal(dealstage="closedwon", amount="1", closedate=T0) for _ in range(120)]
    pages = read(source(emu, page_size=20), (T0 + timedelta(hours=2)).isoformat())
    assert {d.id for d in deals_of(pages)} == set(more)
    assert read(source(emu, page_size=20), pages[-1].watermark)  # the overlap re-reads them


def test_an_edit_inside_a_tie_skips_no_deal(emu: HubSpotEmulator) -> None:
    """30 deals share one timestamp; one is edited after the first page: every deal is read
    (offset paging lost a won deal here: the block shrank under the offset)."""
    tied = [emu.add_deal(dealstage="closedwon", amount="100", closedate=T0) for _ in range(30)]
    pages = source(emu, page_size=10).pages(None, T0)
    seen = [d.id for d in next(pages).deals]
    emu.set_clock(T0 + timedelta(hours=1))
    emu.update("deals", tied[0], amount="150")
    seen += [d.id for p in pages for d in p.deals]
    assert set(seen) == set(tied)


def test_incremental_reads_overlap_once_and_new_edits(emu: HubSpotEmulator) -> None:
    ids = seed(emu, 3, T0)
    for i, deal_id in enumerate(ids):
        emu.set_clock(T0 + timedelta(minutes=30 * i))
        emu.update("deals", deal_id, amount=str(100 + i))
    first = read(source(emu))
    watermark = first[-1].watermark
    assert watermark == (T0 + timedelta(minutes=60)).isoformat()

    emu.set_clock(T0 + timedelta(minutes=90))
    new = emu.add_deal(dealstage="closedwon", amount="900", closedate=T0)
    emu.set_clock(T0 + timedelta(minutes=95))
    emu.update("deals", ids[0], amount="150")
    second = read(source(emu, overlap_minutes=10), watermark)
    assert [(d.id, d.amount) for d in deals_of(second)] == [
        (ids[2], Decimal(102)),
        (new, Decimal(900)),
        (ids[0], Decimal(150)),
    ]

    nothing_new = read(source(emu, overlap_minutes=0), second[-1].watermark)
    assert [d.id for d in deals_of(nothing_new)] == [ids[0]]


def test_edit_between_pages_skips_nothing_and_is_seen_again(emu: HubSpotEmulator) -> None:
    ids = seed(emu, 6)
    pages = source(emu, page_size=2).pages(None, T0)
    seen = [d.id for d in next(pages).deals]
    emu.set_clock(T0 + timedelta(hours=1))
    emu.update("deals", ids[0], amount="500")  # already read: jumps to the end of the sort
    emu.update("deals", ids[3], amount="700")  # not read yet
    rest = list(pages)
    seen += [d.id for p in rest for d in p.deals]
    # The two edits share a timestamp: HubSpot returns them in either order.
    assert seen[:5] == [ids[0], ids[1], ids[2], ids[4], ids[5]]
    assert sorted(seen[5:]) == sorted([ids[0], ids[3]])
    assert rest[-1].watermark == (T0 + timedelta(hours=1)).isoformat()

    again = read(source(emu), rest[-1].watermark)
    assert sorted((d.id, d.amount) for d in deals_of(again)) == sorted([
        (ids[0], Decimal(500)),
        (ids[3], Decimal(700)),
    ])  # fmt: skip


def test_rate_limits_and_server_errors_are_retried(emu: HubSpotEmulator) -> None:
    seed(emu, 1)
    emu.associate(
        emu.add_deal(dealstage="closedwon", amount="1", closedate=T0),
        emu.add_contact(email="c@example.com"),
    )
    emu.inject_fault(
        429,
        {"status": "error", "category": "RATE_LIMITS"},
        headers={"Retry-After": "1"},
        path_contains="/search",
    )
    emu.inject_fault(502, path_contains="/contacts/batch/read", times=2)
    started = time.monotonic()
    pages = read(source(emu))
    assert time.monotonic() - started >= 1.0
    assert len(deals_of(pages)) == 2
    assert emu.count("POST", "/search") == 2 and emu.count("POST", "/batch/read") == 4

    emu.inject_fault(503, path_contains="/search", times=10, headers={"Retry-After": "0"})
    with pytest.raises(TransientError, match="HTTP 503"):
        read(source(emu, max_attempts=3))
    assert emu.count("POST", "/search") == 5


def test_searches_are_throttled_client_side() -> None:
    with HubSpotEmulator(tokens={TOKEN}, search_per_second=5, burst_limit=None) as emu:
        emu.set_clock(T0)
        ids = seed(emu, 9)
        started = time.monotonic()
        pages = read(source(emu, page_size=1, searches_per_second=4, max_attempts=1))
        assert time.monotonic() - started >= 2.0
        assert [d.id for d in deals_of(pages)] == ids
        assert emu.count("POST", "/search") == 9  # no 429 was answered (max_attempts=1)


def test_deals_without_a_currency_are_in_the_portals_company_currency() -> None:
    with HubSpotEmulator(tokens={TOKEN}, company_currency="EUR") as emu:
        emu.set_clock(T0)
        plain = emu.add_deal(dealstage="closedwon", amount="100", closedate=T0)
        priced = emu.add_deal(dealstage="closedwon", amount="100", closedate=T0,
                              deal_currency_code="GBP")  # fmt: skip
        pages = read(source(emu))
        assert {d.id: d.currency for d in deals_of(pages)} == {plain: "EUR", priced: "GBP"}
        assert emu.count("GET", "/account-info/v3/details") == 1  # read once per run
        assert {d.currency for d in deals_of(read(source(emu, default_currency="CHF")))} == {
            "CHF", "GBP"}  # fmt: skip


def test_a_deleted_deal_with_a_bad_amount_is_still_read_as_lost(emu: HubSpotEmulator) -> None:
    """A retraction needs no amount: a deleted deal whose amount, currency or close date no
    longer parses is not quarantined on every run, its deletion is applied."""
    [deal_id] = seed(emu, 1)
    emu.set_clock(T0 + timedelta(minutes=5))
    emu.update("deals", deal_id, amount="n/a", deal_currency_code="EURO")
    emu.archive("deals", deal_id)
    pages = read(source(emu))
    assert [(d.id, d.status, d.amount) for d in deals_of(pages)] == [
        (deal_id, DealStatus.LOST, None)]  # fmt: skip
    assert problems_of(pages) == set()


def test_deleted_deals_are_read_as_lost_with_a_position_of_their_own(
    emu: HubSpotEmulator,
) -> None:
    ids = seed(emu, 5)
    emu.set_clock(T0 + timedelta(minutes=30))
    emu.archive("deals", ids[1])
    emu.set_clock(T0 + timedelta(hours=1))
    emu.archive("deals", ids[3])

    first = read(source(emu, page_size=2))

    # The deleted deals come first, as lost deals: their uploads get retracted.
    gone, *live = first
    assert [(d.id, d.status) for d in gone.deals] == [
        (ids[1], DealStatus.LOST),
        (ids[3], DealStatus.LOST),
    ]
    assert gone.deals[0].fields == {"archivedAt": (T0 + timedelta(minutes=30)).isoformat()}
    assert (gone.deals[0].amount, gone.deals[0].contacts) == (Decimal(101), ())
    assert [d.id for d in deals_of(live)] == [ids[0], ids[2], ids[4]]
    # The watermark carries both positions: the last deal modified, the newest deletion.
    newest = (T0 + timedelta(hours=1)).isoformat()
    modified = (T0 + timedelta(minutes=4)).isoformat()
    assert gone.watermark == f";archived={newest}"
    assert first[-1].watermark == f"{modified};archived={newest}"

    # Next run: deletions inside the 10-minute overlap are read again, older ones not;
    # a deal deleted since is read.
    emu.set_clock(T0 + timedelta(hours=2))
    emu.archive("deals", ids[0])
    again = read(source(emu), first[-1].watermark)
    assert [(d.id, d.status) for d in deals_of(again)] == [
        (ids[0], DealStatus.LOST), (ids[3], DealStatus.LOST),
        (ids[2], DealStatus.WON), (ids[4], DealStatus.WON)]  # fmt: skip
    later = (T0 + timedelta(hours=2)).isoformat()
    assert again[-1].watermark == f"{modified};archived={later}"


def test_deleted_deals_are_listed_in_pages_and_only_the_last_moves_the_position(
    emu: HubSpotEmulator,
) -> None:
    ids = seed(emu, 250)
    for i, deal_id in enumerate(ids[:230]):
        emu.set_clock(T0 + timedelta(hours=1, minutes=i))
        emu.archive("deals", deal_id)

    pages = read(source(emu, page_size=100))

    assert emu.count("GET", "/crm/v3/objects/deals") == 3  # 100 a request
    lost = [p for p in pages if p.deals and p.deals[0].status is DealStatus.LOST]
    assert [len(p.deals) for p in lost] == [100, 100, 30]
    assert {p.watermark for p in lost[:-1]} == {None}  # a cut-short run lists them again
    newest = (T0 + timedelta(hours=1, minutes=229)).isoformat()
    assert lost[-1].watermark == f";archived={newest}"
    assert [d.id for d in deals_of(pages) if d.status is DealStatus.WON] == ids[230:]


def test_deleted_deals_are_not_listed_when_switched_off(emu: HubSpotEmulator) -> None:
    ids = seed(emu, 2)
    emu.archive("deals", ids[0])
    pages = read(source(emu, read_archived=False))
    assert [d.id for d in deals_of(pages)] == [ids[1]]
    assert emu.count("GET", "/crm/v3/objects/deals") == 0
    assert pages[-1].watermark == (T0 + timedelta(minutes=1)).isoformat()


def test_deleted_contact_is_quarantined_and_the_deal_syncs(emu: HubSpotEmulator) -> None:
    kept = emu.add_contact(email="kept@example.com")
    deal = emu.add_deal(contacts=[kept, "999999"], dealstage="closedwon", amount="10", closedate=T0)
    lonely = emu.add_deal(dealstage="closedwon", amount="20", closedate=T0)
    pages = read(source(emu))
    by_id = {d.id: d for d in deals_of(pages)}
    assert [c.crm_id for c in by_id[deal].contacts] == [kept]
    assert by_id[lonely].contacts == ()
    assert problems_of(pages) == {("contact", "999999", "id", "deleted contact")}
    assert pages[0].quarantined[0].detail == {"deal_ids": [deal]}


def test_malformed_records_are_quarantined_while_the_rest_syncs(emu: HubSpotEmulator) -> None:
    emu.add_property("deals", "gclid")
    emu.add_property("deals", "region")
    bad_contact = emu.add_contact(
        email="not-an-email",
        phone="12",
        hs_google_click_id="<x>",
        hs_facebook_click_id="IwAR-fbclid-2",
    )
    no_amount = emu.add_deal(dealstage="closedwon", closedate=T0)
    bad_currency = emu.add_deal(
        dealstage="closedwon", amount="5", closedate=T0, deal_currency_code="XYZ"
    )
    no_close = emu.add_deal(dealstage="closedwon", amount="5")
    negative = emu.add_deal(dealstage="closedwon", amount="-5", closedate=T0)
    garbage = emu.add_deal(dealstage="closedwon", amount="lots", closedate=T0)
    good = emu.add_deal(
        contacts=[bad_contact],
        dealstage="closedwon",
        amount="12.50",
        closedate=T0,
        deal_currency_code="eur",
        gclid="bad gclid",
        region="EMEA",
    )
    open_without_amount = emu.add_deal(dealstage="contractsent")
    pages = read(
        source(emu, deal_click_id_properties={"gclid": "gclid"}, deal_properties=["region"])
    )
    synced = {d.id: d for d in deals_of(pages)}
    assert set(synced) == {good, open_without_amount}
    assert synced[open_without_amount].amount is None
    deal = synced[good]
    assert (deal.amount, deal.currency, deal.fields) == (
        Decimal("12.50"),
        "EUR",
        {"region": "EMEA"},
    )
    assert deal.click_ids.gclid is None
    contact = deal.contacts[0]
    assert not contact.hashes.any() and contact.click_ids.gclid is None
    assert contact.click_ids.fbclid == "IwAR-fbclid-2"
    found = problems_of(pages)
    assert {(kind, rid, field) for kind, rid, field, _ in found} == {
        ("deal", no_amount, "amount"),
        ("deal", bad_currency, "deal_currency_code"),
        ("deal", no_close, "closedate"),
        ("deal", negative, "amount"),
        ("deal", garbage, "amount"),
        ("deal", good, "gclid"),
        ("contact", bad_contact, "email"),
        ("contact", bad_contact, "phone"),
        ("contact", bad_contact, "hs_google_click_id"),
    }
    assert ("deal", no_amount, "amount", "a won deal needs an amount") in found
    assert ("deal", bad_currency, "deal_currency_code", "XYZ is not an ISO 4217 code") in found
    assert all(
        isinstance(q, Quarantined) and q.source == "hs" for p in pages for q in p.quarantined
    )


def test_won_by_stages_or_by_property(emu: HubSpotEmulator) -> None:
    emu.add_pipeline(
        "enterprise",
        "Enterprise",
        [("negotiation", "Negotiation", "0.5", False), ("signed", "Signed", "0.9", True)],
    )
    signed = emu.add_deal(pipeline="enterprise", dealstage="signed", amount="1", closedate=T0)
    negotiating = emu.add_deal(pipeline="enterprise", dealstage="negotiation", amount="1")
    closedwon = emu.add_deal(dealstage="closedwon", amount="1", closedate=T0)
    by_property = {d.id: d.status for d in deals_of(read(source(emu)))}
    assert by_property == {
        signed: DealStatus.LOST,
        negotiating: DealStatus.OPEN,
        closedwon: DealStatus.WON,
    }
    by_stage = {
        d.id: d.status for d in deals_of(read(source(emu, won_stages={"enterprise": ["signed"]})))
    }
    assert by_stage == {
        signed: DealStatus.WON,
        negotiating: DealStatus.OPEN,
        closedwon: DealStatus.WON,  # "default" is not listed: HubSpot's won flag decides
    }


def test_close_dates_as_iso_millis_or_date(emu: HubSpotEmulator) -> None:
    emu.properties["deals"]["closedate"] = PropertyDef("closedate", "string")
    iso = emu.add_deal(dealstage="closedwon", amount="1", closedate="2026-02-01T10:00:00.000Z")
    millis = emu.add_deal(dealstage="closedwon", amount="1", closedate="1769940000000")
    day = emu.add_deal(dealstage="closedwon", amount="1", closedate="2026-02-01")
    close = {d.id: d.close_at for d in deals_of(read(source(emu, timezone="America/Chicago")))}
    assert close == {
        iso: datetime(2026, 2, 1, 10, tzinfo=UTC),
        millis: datetime(2026, 2, 1, 10, tzinfo=UTC),
        day: datetime(2026, 2, 2, 5, 59, 59, tzinfo=UTC),
    }  # a date alone: the end of that day in Chicago, so a click that day comes before it
    # No zone in the mapping: the portal's (US/Eastern here); never later than the run.
    portal = {d.id: d.close_at for d in deals_of(read(source(emu)))}
    assert portal[day] == datetime(2026, 2, 2, 4, 59, 59, tzinfo=UTC)
    src = source(emu, close_time="09:00")
    early = {d.id: d.close_at for p in src.pages(None, datetime(2026, 2, 1, 12, tzinfo=UTC))
             for d in p.deals}  # fmt: skip
    assert early[day] == datetime(2026, 2, 1, 12, tzinfo=UTC)  # 09:00 local is 14:00 UTC


def test_credentials(emu: HubSpotEmulator) -> None:
    with pytest.raises(ConfigError, match="REVSYNC_HUBSPOT_ACCESS_TOKEN"):
        HubSpotDealSource(config(emu), Settings(hubspot_access_token=None), None)
    with pytest.raises(PermanentError, match="HTTP 401") as info:
        read(source(emu, token="pat-wrong-secret"))
    assert "pat-wrong-secret" not in str(info.value)
    assert emu.count() == 1  # a 401 is not tried again


def test_sync_job_end_to_end_runs_twice_without_replanning(
    emu: HubSpotEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REVSYNC_HUBSPOT_ACCESS_TOKEN", TOKEN)
    buyer = emu.add_contact(email="buyer@example.com", hs_google_click_id=GCLID)
    emu.add_deal(
        contacts=[buyer], dealstage="closedwon", amount="2400", closedate=T0 - timedelta(hours=2)
    )
    emu.add_deal(dealstage="contractsent", amount="100")
    mapping = RevsyncConfig(
        sources=[config(emu)],
        privacy={"unknown_consent": "grant"},  # a CRM click ID alone states no consent
        destinations=[
            GoogleAdsDestination(
                type="google_ads",
                name="gads",
                transport="file",
                customer_id="123-456-7890",
                conversion_action="555",
                output_dir=tmp_path / "out",
            )
        ],
    )
    settings = Settings()
    engine = open_store(f"sqlite:///{tmp_path}/x.db")
    clock = lambda: T0 + timedelta(hours=1)  # noqa: E731

    def run() -> Any:
        job = SyncJob(
            engine,
            mapping,
            build_sources(mapping, settings),
            build_destinations(mapping, settings, clock),
            clock=clock,
        )
        return job.run()

    first = run()
    assert first.status == "ok", first.errors
    assert dict(first.deals_read) == {"hs": 2} and first.deals_won == 1
    assert dict(first.planned) == {"gads": 1}
    second = run()
    assert second.status == "ok", second.errors
    assert dict(second.deals_read) == {"hs": 2}  # the overlap re-reads both, upserted
    assert dict(second.planned) == {}
    lines = (tmp_path / "out" / "gads.google_ads.jsonl").read_text().splitlines()
    uploads = [c for line in lines for c in json.loads(line)["body"]["conversions"]]
    assert [(c["gclid"], c["conversion_value"], c["conversion_date_time"]) for c in uploads] == [
        (GCLID, 2400.0, "2026-03-01 10:00:00+00:00")
    ]


def test_a_deal_with_more_associated_contacts_than_a_page_gets_them_all(
    emu: HubSpotEmulator,
) -> None:
    """Associations may come a page at a time per deal (here 2); the source follows each
    deal's ``after`` token, alongside the deals that fit in one page, until none is left."""
    emu.associations_per_page = 2
    big, small = seed(emu, 2)
    people = [emu.add_contact(email=f"p{n}@example.com") for n in range(5)]
    for contact in people:
        emu.associate(big, contact)
    emu.associate(small, people[0])

    deals = {d.id: d for d in deals_of(read(source(emu)))}

    assert sorted(c.crm_id for c in deals[big].contacts) == sorted(people)
    assert [c.crm_id for c in deals[small].contacts] == [people[0]]
    reads = [json.loads(r.body)["inputs"] for r in emu.requests
             if r.path.endswith("/associations/deals/contacts/batch/read")]  # fmt: skip
    assert [len(inputs) for inputs in reads] == [2, 1, 1]  # both deals, then big twice more
    assert all("after" in item for inputs in reads[1:] for item in inputs)


def test_a_crm_deal_with_an_unbelievable_zero_or_future_won_amount_is_not_uploaded(
    emu: HubSpotEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The amount rules hold for API sources as for exports: finite, at most max_amount,
    rounded to the currency's minor unit; a won deal worth 0 or closing after the run is
    quarantined. Before, 1e20 was sent to Google and JPY 100.999 went unrounded."""
    monkeypatch.setenv("REVSYNC_HUBSPOT_ACCESS_TOKEN", TOKEN)
    won = {"dealstage": "closedwon", "closedate": T0 - timedelta(hours=2)}
    ids = {}
    for name, amount, extra in (
        ("huge", "1e20", {}), ("zero", "0", {}), ("yen", "100.999", {"deal_currency_code": "JPY"}),
        ("future", "50", {"closedate": T0 + timedelta(days=2)}), ("good", "2400", {}),
    ):  # fmt: skip
        buyer = emu.add_contact(email=f"{name}@example.com", hs_google_click_id=f"{GCLID}{name}")
        ids[name] = emu.add_deal(contacts=[buyer], **{**won, "amount": amount, **extra})
    mapping = RevsyncConfig(
        sources=[config(emu)],
        privacy={"unknown_consent": "grant"},
        destinations=[GoogleAdsDestination(
            type="google_ads", name="gads", transport="file", customer_id="123-456-7890",
            conversion_action="555", output_dir=tmp_path / "out",
        )],
    )  # fmt: skip
    engine = open_store(f"sqlite:///{tmp_path}/x.db")
    clock = lambda: T0 + timedelta(hours=1)  # noqa: E731
    summary = SyncJob(
        engine, mapping, build_sources(mapping, Settings()),
        build_destinations(mapping, Settings(), clock), clock=clock,
    ).run()  # fmt: skip

    assert summary.status == "partial"
    quarantined = {(q.record_id, q.field): q.reason for q in summary.quarantined}
    assert set(quarantined) == {(ids["huge"], "amount"), (ids["zero"], "amount"),
                                (ids["future"], "close_date")}  # fmt: skip
    assert "max_amount" in quarantined[(ids["huge"], "amount")]
    lines = (tmp_path / "out" / "gads.google_ads.jsonl").read_text().splitlines()
    sent = {(c["currency_code"], c["conversion_value"])
            for line in lines for c in json.loads(line)["body"]["conversions"]}  # fmt: skip
    assert sent == {("JPY", 101.0), ("USD", 2400.0)}


def test_each_deals_primary_company_and_creation_time(emu: HubSpotEmulator) -> None:
    """With ``companies: true``, one associations call per page gives each deal its primary
    company (association type 5), whatever HubSpot's order; ``createdate`` comes along."""
    first, second, alone = seed(emu, 3)
    emu.associate_company(first, "900")
    emu.associate_company(first, "77", primary=True)  # primary although listed after 900
    emu.associate_company(second, "901")
    before = emu.daily_usage
    deals = {d.id: d for d in deals_of(read(source(emu, companies=True)))}
    with_companies = emu.daily_usage - before
    assert (deals[first].account_id, deals[second].account_id) == ("77", "901")
    assert deals[alone].account_id is None
    assert deals[first].created_at == T0
    before = emu.daily_usage
    plain = deals_of(read(source(emu)))
    assert {d.account_id for d in plain} == {None}
    assert with_companies == emu.daily_usage - before + 1


def test_stage_history_from_the_date_entered_properties(
    emu: HubSpotEmulator, tmp_path: Path
) -> None:
    """With ``stage_history: true``, the pipelines are read once and one batch read per page
    gives each deal ``hs_v2_date_entered_<stage>`` of every pipeline's stages, oldest first;
    the sync stores them with origin ``crm``."""
    emu.add_pipeline("p2", "Renewals", [("901", "Renewal due", "0.5", False)])
    moved = emu.add_deal(dealstage="appointmentscheduled", amount="10")
    emu.set_clock(T0 + timedelta(days=2))
    emu.update("deals", moved, dealstage="qualifiedtobuy")
    renewal = emu.add_deal(pipeline="p2", dealstage="901", amount="20")
    emu.set_clock(T0 + timedelta(days=3))
    before = emu.daily_usage
    assert {d.stage_history for d in deals_of(read(source(emu)))} == {()}
    plain, before = emu.daily_usage - before, emu.daily_usage
    src = source(emu, stage_history=True)
    deals = {d.id: d for d in deals_of(read(src))}
    assert emu.daily_usage - before == plain + 2  # the pipelines, one batch read
    assert deals[moved].stage_history == (
        (T0, "appointmentscheduled"), (T0 + timedelta(days=2), "qualifiedtobuy"))  # fmt: skip
    assert deals[renewal].stage_history == ((T0 + timedelta(days=2), "901"),)
    read(src)
    assert sum(r.path.endswith("/pipelines/deals") for r in emu.requests) == 1

    store = open_store(f"sqlite:///{tmp_path}/x.db")
    with store.begin() as conn:
        store_deals(conn, list(deals.values()), T0 + timedelta(days=3))
        rows = conn.execute(
            select(deal_stages.c.deal_id, deal_stages.c.stage, deal_stages.c.origin)
        ).all()
    # the sync's own entry (at modified_at) is the CRM's: one row, the CRM's
    assert sorted(rows) == sorted([(moved, "appointmentscheduled", "crm"),
                                   (moved, "qualifiedtobuy", "crm"), (renewal, "901", "crm")])  # fmt: skip
