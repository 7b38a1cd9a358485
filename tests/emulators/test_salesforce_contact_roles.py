"""The emulator's OpportunityContactRole stamps, as Salesforce keeps them (issue #12)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest
import requests
from simple_salesforce import Salesforce

from tests.emulators.salesforce import SalesforceEmulator
from tests.emulators.tls import TlsFiles

T0 = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)


@pytest.fixture
def emu(tls: TlsFiles) -> Iterator[SalesforceEmulator]:
    emulator = SalesforceEmulator(tls)
    emulator.set_clock(T0)
    with emulator:
        yield emulator


def connect(emu: SalesforceEmulator, tls: TlsFiles) -> Salesforce:
    session = requests.Session()
    session.verify, session.trust_env = str(tls.ca_cert), False
    return Salesforce(instance_url=emu.base_url, session_id=emu.issue_session(),
                      session=session, version="59.0")  # fmt: skip


def test_a_contact_role_has_its_own_stamp_and_leaves_the_opportunitys_alone(
    emu: SalesforceEmulator, tls: TlsFiles
) -> None:
    opp = emu.add("Opportunity", StageName="Closed Won", Amount=10.0)
    contact = emu.add("Contact", LastName="Late", Email="late@example.com")
    emu.set_clock(T0 + dt.timedelta(hours=2, microseconds=654_321))
    role = emu.add("OpportunityContactRole", OpportunityId=opp, ContactId=contact)
    emu.advance(hours=1)
    emu.update("OpportunityContactRole", role, IsPrimary=True)
    emu.advance(hours=1)
    emu.delete("OpportunityContactRole", role)

    stored = emu.get("Opportunity", opp)
    assert stored["SystemModstamp"] == stored["LastModifiedDate"] == T0
    # whole seconds: Salesforce drops a stamp's milliseconds
    assert emu.get("OpportunityContactRole", role)["SystemModstamp"] == T0 + dt.timedelta(hours=4)
    assert emu.get("OpportunityContactRole", role)["CreatedDate"] == T0 + dt.timedelta(hours=2)

    sf = connect(emu, tls)
    soql = ("SELECT OpportunityId, SystemModstamp FROM OpportunityContactRole "
            "WHERE SystemModstamp >= 2026-03-01T13:00:00Z "
            "AND Opportunity.SystemModstamp < 2026-03-01T13:00:00Z")  # fmt: skip
    assert sf.query(soql)["totalSize"] == 0  # deleted: only queryAll returns it
    [row] = sf.query_all(soql, include_deleted=True)["records"]
    assert (row["OpportunityId"], row["SystemModstamp"]) == (opp, "2026-03-01T16:00:00.000+0000")
    later = soql.replace(">= 2026-03-01T13", "> 2026-03-01T16")
    assert sf.query_all(later, include_deleted=True)["totalSize"] == 0


def test_api_writes_stamp_whole_seconds(emu: SalesforceEmulator, tls: TlsFiles) -> None:
    contact = emu.add("Contact", LastName="A")
    emu.set_clock(T0 + dt.timedelta(minutes=5, microseconds=999_999))
    connect(emu, tls).Contact.update(contact, {"Email": "a@example.com"})
    assert emu.get("Contact", contact)["SystemModstamp"] == T0 + dt.timedelta(minutes=5)
