"""A won deal deleted in the CRM past its recycle bin (hard-deleted, purged) never comes
back as deleted: the daily reconciliation finds it gone and its upload is retracted."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from revsync.config.mapping import RevsyncConfig
from revsync.config.settings import Settings
from revsync.sync.factory import build_destinations, build_sources
from revsync.sync.job import SyncJob
from revsync.sync.summary import RunSummary
from tests.contract import test_hubspot_source as hs
from tests.contract import test_salesforce_source as sf
from tests.emulators.hubspot import HubSpotEmulator
from tests.emulators.salesforce import SalesforceEmulator
from tests.emulators.tls import TlsFiles


class Org:
    """One CRM with one won deal whose contact carries a gclid."""

    def __init__(self, kind: str, tls: TlsFiles, monkeypatch: pytest.MonkeyPatch) -> None:
        self.kind = kind
        if kind == "salesforce":
            self.emu: Any = sf.start(tls)
            [self.deal] = sf.seed(self.emu, 1)
            self.block = sf.config(self.emu, tls).model_dump(mode="json")
            self.settings = sf.SETTINGS
            self.t0: datetime = sf.T0
        else:
            self.emu = HubSpotEmulator(tokens={hs.TOKEN}, search_per_second=None, burst_limit=None)
            self.emu.set_clock(hs.T0)
            self.emu.start()
            buyer = self.emu.add_contact(email="b@example.com", hs_google_click_id=hs.GCLID)
            self.deal = self.emu.add_deal(contacts=[buyer], dealstage="closedwon", amount="900",
                                          closedate=hs.T0 - timedelta(hours=2))  # fmt: skip
            self.block = hs.config(self.emu).model_dump(mode="json")
            monkeypatch.setenv("REVSYNC_HUBSPOT_ACCESS_TOKEN", hs.TOKEN)
            self.settings = Settings()
            self.t0 = hs.T0

    def purge(self) -> None:
        if isinstance(self.emu, SalesforceEmulator):
            self.emu.purge("Opportunity", self.deal)
        else:
            self.emu.purge("deals", self.deal)


@pytest.fixture(params=["salesforce", "hubspot"])
def org(request: pytest.FixtureRequest, tls: TlsFiles, monkeypatch: pytest.MonkeyPatch) -> Iterator[Org]:  # fmt: skip
    found = Org(request.param, tls, monkeypatch)
    yield found
    found.emu.stop()


def test_a_won_deal_purged_in_the_crm_is_retracted_at_the_next_reconciliation(
    engine: Engine, tmp_path: Path, org: Org
) -> None:
    mapping = RevsyncConfig.model_validate({
        "sources": [{**org.block, "name": "crm", "reconcile_hours": 24}],
        "privacy": {"unknown_consent": "grant"},  # a CRM click ID alone states no consent
        "destinations": [{"type": "google_ads", "name": "gads", "transport": "file",
                          "customer_id": "1234567890", "conversion_action": "555",
                          "output_dir": str(tmp_path / "out")}],
    })  # fmt: skip

    def run(at: datetime) -> RunSummary:
        clock = lambda: at  # noqa: E731
        return SyncJob(engine, mapping, build_sources(mapping, org.settings),
                       build_destinations(mapping, org.settings, clock), clock=clock).run()  # fmt: skip

    first = run(org.t0 + timedelta(hours=1))
    assert dict(first.planned) == {"gads": 1}, first.as_dict()
    org.purge()
    soon = run(org.t0 + timedelta(hours=3))  # not due yet: the last check was at the first run
    assert dict(soon.planned) == {}
    later = run(org.t0 + timedelta(hours=26))
    assert dict(later.planned) == {"gads": 1}  # the retraction
    assert any("no longer exist in the CRM" in w for w in later.warnings)
    lines = (tmp_path / "out" / "gads.google_ads.jsonl").read_text().splitlines()
    adjustments = [
        a for line in lines for a in json.loads(line)["body"].get("conversion_adjustments", [])
    ]
    assert [a["adjustment_type"] for a in adjustments] == ["RETRACTION"]
    assert dict(run(org.t0 + timedelta(hours=60)).planned) == {}  # retracted once
