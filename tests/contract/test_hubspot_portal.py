"""What real HubSpot portals do to deals. Merges: the merged record is a new deal that lists
the deals it replaced in ``hs_merged_object_ids``; those disappear without being archived,
and whatever was uploaded for them stands for the merged deal (not uploaded a second time).
Pipelines: ``won_stages`` for some pipelines leaves the others to HubSpot's won flag."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine

from revsync.config.mapping import RevsyncConfig
from revsync.config.settings import Settings
from revsync.sync.factory import build_destinations, build_sources
from revsync.sync.job import SyncJob
from revsync.sync.planning import MERGED
from revsync.sync.summary import RunSummary
from tests.contract.test_hubspot_source import GCLID, T0, TOKEN, config, read, source
from tests.emulators.hubspot import HubSpotEmulator


@pytest.fixture
def emu() -> Iterator[HubSpotEmulator]:
    emulator = HubSpotEmulator(tokens={TOKEN}, search_per_second=None, burst_limit=None)
    emulator.set_clock(T0)
    with emulator:
        yield emulator


def test_a_merged_deal_names_the_deals_it_replaced(emu: HubSpotEmulator) -> None:
    first = emu.add_deal(dealstage="closedwon", amount="100", closedate=T0)
    second = emu.add_deal(dealstage="appointmentscheduled", amount="5", closedate=T0)
    emu.set_clock(T0 + timedelta(hours=1))
    merged = emu.merge(first, second)
    deals = [d for page in read(source(emu)) for d in page.deals]
    assert [d.id for d in deals] == [merged]  # the two are gone, and not as archived deals
    assert deals[0].fields["merged_from"] == f"{first};{second}"


def test_a_deal_merged_after_its_upload_is_not_uploaded_again(
    emu: HubSpotEmulator, engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REVSYNC_HUBSPOT_ACCESS_TOKEN", TOKEN)
    buyer = emu.add_contact(email="buyer@example.com", hs_google_click_id=GCLID)
    won = emu.add_deal(contacts=[buyer], dealstage="closedwon", amount="2400",
                       closedate=T0 - timedelta(hours=2))  # fmt: skip
    duplicate = emu.add_deal(contacts=[buyer], dealstage="appointmentscheduled", amount="2400")
    mapping = RevsyncConfig(
        sources=[config(emu)],
        privacy={"unknown_consent": "grant"},  # a CRM click ID alone states no consent
        destinations=[{"type": "google_ads", "name": "gads", "transport": "file",
                       "customer_id": "123-456-7890", "conversion_action": "555",
                       "output_dir": str(tmp_path / "out")}],
    )

    def run(hours: int) -> RunSummary:
        clock = lambda: T0 + timedelta(hours=hours)  # noqa: E731
        settings = Settings()
        return SyncJob(engine, mapping, build_sources(mapping, settings),
                       build_destinations(mapping, settings, clock), clock=clock).run()  # fmt: skip

    assert dict(run(1).planned) == {"gads": 1}
    emu.set_clock(T0 + timedelta(hours=2))
    emu.merge(won, duplicate)  # a rep cleans up the duplicate: a new, won deal replaces both

    again = run(3)

    assert again.status == "ok" and dict(again.planned) == {}
    assert again.skipped[f"gads: {MERGED}"] == 1
    lines = (tmp_path / "out" / "gads.google_ads.jsonl").read_text().splitlines()
    assert [c["gclid"] for line in lines for c in json.loads(line)["body"]["conversions"]] == [
        GCLID]  # fmt: skip


def test_a_pipeline_won_stages_does_not_list_is_won_by_hubspots_flag(emu: HubSpotEmulator) -> None:
    """won_stages for one pipeline must not make every other pipeline never-won."""
    emu.add_pipeline("renewals", "Renewals", [("renewed", "Renewed", "1.0", True),
                                              ("churned", "Churned", "0.0", True)])  # fmt: skip
    listed = emu.add_deal(dealstage="contractsent", amount="5", closedate=T0)
    renewed = emu.add_deal(pipeline="renewals", dealstage="renewed", amount="900", closedate=T0)
    churned = emu.add_deal(pipeline="renewals", dealstage="churned", amount="9", closedate=T0)
    src = source(emu, won_stages={"default": ["closedwon", "contractsent"]})
    status = {d.id: d.status.value for page in read(src) for d in page.deals}
    assert status == {listed: "won", renewed: "won", churned: "lost"}
    checks = {c.check: c for c in src.check()}
    assert checks["unlisted pipelines"].status == "warn"
    assert "renewals" in checks["unlisted pipelines"].detail
