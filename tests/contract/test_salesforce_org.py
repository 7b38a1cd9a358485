"""What a real Salesforce org decides for revsync: its time zone places date-only
CloseDates (the end of that local day, so a click on the close day comes before the close)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime

import pytest

from revsync.sources.salesforce import SalesforceDealSource
from tests.contract.test_salesforce_source import SETTINGS, T0, config, seed, source, start
from tests.emulators.salesforce import SalesforceEmulator
from tests.emulators.tls import TlsFiles


@pytest.fixture
def emu(tls: TlsFiles) -> Iterator[SalesforceEmulator]:
    emulator = start(tls)
    yield emulator
    emulator.stop()


def test_a_date_only_close_is_the_end_of_that_day_in_the_orgs_zone(
    emu: SalesforceEmulator, tls: TlsFiles
) -> None:
    [deal_id] = seed(emu, 1, CloseDate=date(2026, 2, 27).isoformat())
    org_default = SalesforceDealSource(config(emu, tls, timezone=None, close_time=None), SETTINGS)
    [deal] = [d for page in org_default.pages(None, T0) for d in page.deals]
    # 23:59:59 in Los Angeles (the org's TimeZoneSidKey), not noon UTC (04:00 there)
    assert deal.id == deal_id and deal.close_at == datetime(2026, 2, 28, 7, 59, 59, tzinfo=UTC)
    # A zone in the mapping wins; a close is never placed after the run's time.
    mapped = source(emu, tls, timezone="Europe/Berlin", close_time=None)
    early = datetime(2026, 2, 27, 20, 0, tzinfo=UTC)
    [deal] = [d for page in mapped.pages(None, early) for d in page.deals]
    assert deal.close_at == early  # 21:00 in Berlin: the day has not ended


def test_a_mobile_phone_counts_and_an_unseen_contact_hints_at_permissions(
    emu: SalesforceEmulator, tls: TlsFiles
) -> None:
    opp = emu.add("Opportunity", Amount=100.0, CloseDate="2026-02-27", StageName="Closed Won")
    mobile = emu.add("Contact", LastName="M", MobilePhone="(415) 555-0199")
    emu.add("OpportunityContactRole", OpportunityId=opp, ContactId=mobile, IsPrimary=True)
    hidden = emu.add("Contact", LastName="H")
    emu.add("OpportunityContactRole", OpportunityId=opp, ContactId=hidden)
    emu.purge("Contact", hidden)  # as a contact the integration user cannot see: no record
    pages = list(source(emu, tls).pages(None, T0))
    [deal] = [d for p in pages for d in p.deals]
    [contact] = deal.contacts
    assert contact.crm_id == mobile and contact.hashes.phone is not None
    [problem] = [q for p in pages for q in p.quarantined]
    assert (
        problem.field == "ContactId"
        and "not visible to revsync's integration user" in problem.reason
    )
