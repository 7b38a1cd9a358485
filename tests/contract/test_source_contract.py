"""The contract every ``DealSource`` passes: file, Salesforce and HubSpot, one suite.

Each scenario runs against every adapter in ``tests/contract/harness/sources.py`` (the real
source class against its CRM: a JSONL export, the Salesforce emulator over TLS through
simple-salesforce, the HubSpot emulator through hubspot-api-client). Scenarios that need
something a CRM does not have are parametrised only over the adapters whose capabilities
include it; ``test_exclusions_are_declared_with_their_reason`` pins that matrix:

=====================  ====  ==========  =======
scenario               file  salesforce  hubspot
=====================  ====  ==========  =======
paging                 yes   yes         yes
edits during a run     yes   yes         yes
overlap re-read        yes   yes         yes
sync job twice         yes   yes         yes
malformed records      yes   yes         yes     (file: a deleted contact is simply absent)
deleted deals          --    queryAll    archived list
auth expiry            --    refresh     revoked (static private-app token)
rate limits            --    budget      429
=====================  ====  ==========  =======
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from revsync.collect.importer import import_identities, import_touchpoints
from revsync.config.destinations import GoogleAdsDestination
from revsync.config.mapping import RevsyncConfig
from revsync.config.settings import Settings
from revsync.destinations.pii import hash_person
from revsync.domain import Deal, DealStatus
from revsync.errors import PermanentError
from revsync.sources.base import DealPage, DealSource
from revsync.store.engine import open_store
from revsync.store.schema import deals
from revsync.sync.factory import build_destinations
from revsync.sync.job import SyncJob
from revsync.sync.ledger import deal_ledger
from revsync.sync.summary import RunSummary
from tests.contract.harness.sources import (
    CLOSE,
    SPACING,
    T0,
    Expected,
    FileAdapter,
    HubSpotAdapter,
    SalesforceAdapter,
    SourceAdapter,
    email,
)
from tests.emulators.tls import TlsFiles

ADAPTERS: dict[str, type[SourceAdapter]] = {
    "file": FileAdapter,
    "salesforce": SalesforceAdapter,
    "hubspot": HubSpotAdapter,
}


def having(capability: str) -> list[str]:
    """The adapters whose CRM has ``capability``; the others are excluded by design."""
    return [name for name, cls in ADAPTERS.items() if getattr(cls.caps, capability)]


@pytest.fixture(params=list(ADAPTERS))
def adapter(
    request: pytest.FixtureRequest, tmp_path: Path, tls: TlsFiles
) -> Iterator[SourceAdapter]:
    name = request.param
    built: SourceAdapter
    if name == "file":
        built = FileAdapter(tmp_path)
    elif name == "salesforce":
        built = SalesforceAdapter(tls)
    else:
        built = HubSpotAdapter()
    built.start()
    yield built
    built.stop()


def read(src: DealSource, watermark: str | None = None) -> list[DealPage]:
    """One run of a source from ``watermark`` (the job's ``now`` does not steer reads)."""
    try:
        return list(src.pages(watermark, T0))
    finally:
        src.close()


def ids_of(*runs: list[DealPage]) -> list[str]:
    return [d.id for run in runs for p in run for d in p.deals]


def replay(*runs: list[DealPage]) -> dict[str, Deal]:
    """What the store holds after upserting the runs' pages in order (last write wins)."""
    state: dict[str, Deal] = {}
    for run in runs:
        for page in run:
            state.update({d.id: d for d in page.deals})
    return state


def no_secret_in(text: str, adapter: SourceAdapter) -> None:
    leaked = [s for s in adapter.secrets if s in text]
    assert not leaked, f"{adapter.name} leaked a secret"


# --- the matrix ------------------------------------------------------------------------


def test_exclusions_are_declared_with_their_reason() -> None:
    excluded = {
        (name, capability)
        for name, cls in ADAPTERS.items()
        for capability in ("auth", "rate_limit")
        if not getattr(cls.caps, capability)
    }
    assert excluded == {("file", "auth"), ("file", "rate_limit")}
    for name, capability in excluded:
        assert len(ADAPTERS[name].caps.why_not[capability]) > 20
    assert not FileAdapter.caps.deleted_contact_quarantined
    assert "deleted contact" in FileAdapter.caps.why_not["deleted_contact"]
    assert having("deleted_deals") == ["salesforce", "hubspot"]
    assert "status lost" in FileAdapter.caps.why_not["deleted_deals"]
    assert having("auth") == ["salesforce", "hubspot"]
    assert having("rate_limit") == ["salesforce", "hubspot"]


# --- paging ----------------------------------------------------------------------------


def test_pages_hold_at_most_a_page_of_deals_in_watermark_order(adapter: SourceAdapter) -> None:
    size = adapter.caps.page_size
    ids = adapter.seed(2 * size + 1)

    pages = read(adapter.source())

    assert [len(p.deals) for p in pages] == [size, size, 1]
    assert ids_of(pages) == ids  # ascending modified time, nothing twice
    assert [p.watermark for p in pages] == [p.deals[-1].modified_at.isoformat() for p in pages]
    assert pages[-1].watermark == adapter.now.isoformat()
    assert not any(p.budget_exhausted or p.quarantined for p in pages)
    first = pages[0].deals[0]
    assert (first.source, first.status, first.amount, first.currency) == (
        "crm", DealStatus.WON, Decimal(100), "USD",
    )  # fmt: skip
    assert (first.close_at, first.modified_at) == (CLOSE, T0 + SPACING)
    [contact] = first.contacts
    assert contact.is_primary and contact.hashes == hash_person(email(1), None)


def test_an_empty_read_keeps_the_watermark(adapter: SourceAdapter) -> None:
    adapter.seed(1)
    watermark = read(adapter.source())[-1].watermark
    later = (adapter.now + timedelta(days=1)).isoformat()

    # No page at all, or empty pages that keep the watermark: either way it never moves.
    assert {(p.deals, p.watermark) for p in read(adapter.source(), later)} <= {((), later)}
    assert ids_of(read(adapter.source(), watermark))  # the overlap re-reads the newest deal


# --- incremental reads -----------------------------------------------------------------


def test_edits_made_during_a_run_are_never_lost(adapter: SourceAdapter) -> None:
    ids = adapter.seed(5)
    src = adapter.source()
    stream = src.pages(None, T0)
    first = next(stream)
    adapter.edit(ids[0], Decimal(1001))  # already read
    adapter.edit(ids[3], Decimal(1004))  # not yet read by the paged sources
    rest = list(stream)
    src.close()
    run1 = [first, *rest]

    run2 = read(adapter.source(), run1[-1].watermark)

    assert set(ids) <= set(ids_of(run1))
    # Upserting run 1 then run 2 leaves the CRM's current amounts, edits included.
    expected = {deal_id: adapter.amount_of(i + 1) for i, deal_id in enumerate(ids)}
    expected |= {ids[0]: Decimal(1001), ids[3]: Decimal(1004)}
    assert {k: d.amount for k, d in replay(run1, run2).items()} == expected
    assert run2[-1].watermark == adapter.now.isoformat()


def test_rereading_the_overlap_yields_each_deal_once(adapter: SourceAdapter) -> None:
    ids = adapter.seed(3)
    watermark = read(adapter.source())[-1].watermark

    # Only the deal at the watermark is inside the 10-minute overlap (deals are 1 h apart).
    assert ids_of(read(adapter.source(), watermark)) == [ids[-1]]
    [new] = adapter.seed(1)
    assert ids_of(read(adapter.source(), watermark)) == [ids[-1], new]


def _synced_store(adapter: SourceAdapter, tmp_path: Path) -> tuple[Engine, RevsyncConfig]:
    """A store with a gclid touchpoint and a lead (the seeded emails) for visitors v1-v3,
    and a mapping from ``adapter``'s CRM to a Google Ads file destination."""
    engine = open_store(f"sqlite:///{tmp_path / 'revsync.db'}")
    (tmp_path / "tp.csv").write_text(
        "visitor_id,occurred_at,landing_url,consent_ad_user_data\n"
        + "".join(f"v{n},2026-02-20T09:00:00Z,https://x.com/?gclid=CjwGclid000{n},granted\n"
                  for n in (1, 2, 3))
    )  # fmt: skip
    (tmp_path / "leads.csv").write_text(
        "visitor_id,observed_at,email\n"
        + "".join(f"v{n},2026-02-20T09:05:00Z,{email(n)}\n" for n in (1, 2, 3))
    )
    import_touchpoints(engine, tmp_path / "tp.csv")
    import_identities(engine, tmp_path / "leads.csv")
    mapping = RevsyncConfig(
        sources=[adapter.config()],
        matching={"default_phone_region": "US"},
        destinations=[GoogleAdsDestination(
            name="gads", type="google_ads", transport="file", output_dir=tmp_path / "out",
            customer_id="1234567890", conversion_action="42")],
    )  # fmt: skip
    return engine, mapping


def _sync(adapter: SourceAdapter, engine: Engine, mapping: RevsyncConfig, hours: int) -> RunSummary:
    clock = lambda: adapter.now + timedelta(hours=hours)  # noqa: E731
    destinations = build_destinations(mapping, Settings(), clock)
    return SyncJob(engine, mapping, [adapter.source()], destinations, clock=clock).run()


def test_the_overlap_plans_nothing_twice_through_the_sync_job(
    adapter: SourceAdapter, tmp_path: Path
) -> None:
    adapter.seed(3)
    engine, mapping = _synced_store(adapter, tmp_path)
    out = tmp_path / "out"
    try:
        first = _sync(adapter, engine, mapping, 1)
        lines = (out / "gads.google_ads.jsonl").read_text().splitlines()
        second = _sync(adapter, engine, mapping, 2)
    finally:
        engine.dispose()

    assert (first.status, dict(first.deals_read), dict(first.planned)) == (
        "ok", {"crm": 3}, {"gads": 3},
    )  # fmt: skip
    assert second.status == "ok" and second.deals_read["crm"] >= 1  # the overlap re-read
    assert sum(second.planned.values()) == 0
    assert (out / "gads.google_ads.jsonl").read_text().splitlines() == lines
    sent = [c for line in lines for c in json.loads(line)["body"]["conversions"]]
    assert sorted(c["gclid"] for c in sent) == [f"CjwGclid000{n}" for n in (1, 2, 3)]


@pytest.mark.parametrize("adapter", having("deleted_deals"), indirect=True)
def test_a_deleted_won_deal_is_retracted_once_through_the_sync_job(
    adapter: SourceAdapter, tmp_path: Path
) -> None:
    ids = adapter.seed(3)
    engine, mapping = _synced_store(adapter, tmp_path)
    try:
        first = _sync(adapter, engine, mapping, 1)
        adapter.delete_deal(ids[1])
        second = _sync(adapter, engine, mapping, 2)
        third = _sync(adapter, engine, mapping, 3)
        with engine.connect() as conn:
            ledger_rows = deal_ledger(conn, "crm", ids)
            status = dict(conn.execute(select(deals.c.id, deals.c.status)).all())
    finally:
        engine.dispose()

    assert dict(first.planned) == {"gads": 3}
    assert (second.status, dict(second.planned)) == ("ok", {"gads": 1})
    assert sum(third.planned.values()) == 0  # re-reading the deletion retracts nothing twice
    assert status == {ids[0]: "won", ids[1]: "lost", ids[2]: "won"}
    kinds = {
        deal: [(r["kind"], r["state"]) for r in rows] for (deal, _), rows in ledger_rows.items()
    }
    assert kinds[ids[1]] == [("conversion", "sent"), ("retraction", "sent")]
    assert kinds[ids[0]] == kinds[ids[2]] == [("conversion", "sent")]


# --- malformed records -----------------------------------------------------------------


def test_malformed_records_are_quarantined_with_reasons_and_the_rest_syncs(
    adapter: SourceAdapter,
) -> None:
    good = adapter.seed(2)
    [orphaned] = adapter.seed(1)
    contact_id, deleted = adapter.delete_contact(orphaned)
    defects = {kind: adapter.malformed(kind)
               for kind in ("missing_amount", "unknown_currency", "bad_email")}  # fmt: skip
    bad_email_deal = defects["bad_email"][0]

    pages = read(adapter.source())

    synced = replay(pages)
    assert set(synced) == {*good, orphaned, bad_email_deal}
    assert [synced[i].amount for i in good] == [Decimal(100), Decimal(200)]
    assert all(synced[i].contacts[0].hashes.email for i in good)
    assert contact_id not in [c.crm_id for c in synced[orphaned].contacts]
    assert synced[orphaned].amount == Decimal(300)
    assert not any(c.hashes.email for c in synced[bad_email_deal].contacts)

    quarantined = [q for p in pages for q in p.quarantined]
    expected: set[Expected] = {e for _, e in defects.values()}
    assert (deleted is not None) is adapter.caps.deleted_contact_quarantined
    if deleted is not None:
        expected.add(deleted)
    assert {Expected(q.kind, q.record_id, q.field) for q in quarantined} == expected
    assert len(quarantined) == len(expected)
    assert all(q.reason.strip() and q.source == "crm" for q in quarantined)
    # Only hashes leave a source: no raw address, valid or not, in deals or reasons.
    text = repr(pages)
    assert "@example.com" not in text and "not-an-email" not in text


# --- auth ------------------------------------------------------------------------------


@pytest.mark.parametrize("adapter", having("auth"), indirect=True)
def test_expired_auth_mid_run_is_renewed_or_stops_cleanly(adapter: SourceAdapter) -> None:
    ids = adapter.seed(5)
    src = adapter.source()
    stream = src.pages(None, T0)
    first = next(stream)
    grants = adapter.token_grants()

    adapter.expire_auth()

    if adapter.caps.auth == "refresh":
        rest = list(stream)
        src.close()
        assert ids_of([first, *rest]) == ids
        assert adapter.token_grants() == grants + 1
        return
    # A static token cannot be renewed: a permanent error, the token never in its text,
    # and the pages already yielded keep their watermark, so nothing is lost.
    with pytest.raises(PermanentError) as stopped:
        list(stream)
    src.close()
    assert "401" in str(stopped.value)
    no_secret_in(str(stopped.value), adapter)
    adapter.restore_auth()
    resumed = read(adapter.source(), first.watermark)
    assert set(ids) <= set(ids_of([first], resumed))


# --- rate limits -----------------------------------------------------------------------


@pytest.mark.parametrize("adapter", having("rate_limit"), indirect=True)
def test_rate_limits_lose_no_deal(adapter: SourceAdapter) -> None:
    ids = adapter.seed(5)
    adapter.throttle()

    run1 = read(adapter.source())

    assert adapter.limited() >= 1  # the limit was hit, and the run still ended cleanly
    assert not any(p.budget_exhausted for p in run1[:-1])
    if adapter.caps.rate_limit == "retry":
        assert ids_of(run1) == ids and not run1[-1].budget_exhausted
        return
    # A spent budget ends the run early, with a watermark no later than what was yielded.
    assert run1[-1].budget_exhausted and set(ids_of(run1)) < set(ids)
    yielded = [d.modified_at for p in run1 for d in p.deals]
    assert run1[-1].watermark == (max(yielded).isoformat() if yielded else None)
    adapter.unthrottle()
    run2 = read(adapter.source(), run1[-1].watermark)
    assert set(ids) <= set(ids_of(run1, run2))
    assert not any(p.budget_exhausted for p in run2)
