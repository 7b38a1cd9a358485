"""simple-salesforce, unmodified, against the Salesforce emulator over TLS."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from collections.abc import Iterator
from pathlib import Path

import jwt
import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import (
    SalesforceExpiredSession,
    SalesforceGeneralError,
    SalesforceMalformedRequest,
    SalesforceRefusedRequest,
)

from tests.emulators.salesforce import SalesforceEmulator
from tests.emulators.tls import TlsFiles, make_tls_files

T0 = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls_files(Path(tmp_path_factory.mktemp("sf-tls")))


@pytest.fixture
def emu(tls: TlsFiles) -> Iterator[SalesforceEmulator]:
    emulator = SalesforceEmulator(
        tls, custom_fields={"Lead": {"GCLID__c": "string"}, "Contact": {"GCLID__c": "string"}},
        page_size=3, bulk_polls=2,
    )
    emulator.set_clock(T0)
    with emulator:
        yield emulator


def http(tls: TlsFiles) -> requests.Session:
    session = requests.Session()
    session.verify = str(tls.ca_cert)
    session.trust_env = False
    return session


def connect(emu: SalesforceEmulator, tls: TlsFiles, token: str | None = None) -> Salesforce:
    return Salesforce(instance_url=emu.base_url, session_id=token or emu.issue_session(),
                      session=http(tls), version="59.0")


def seed_deals(emu: SalesforceEmulator, won: int, lost: int = 0) -> list[str]:
    ids = []
    for i in range(won + lost):
        emu.set_clock(T0 + dt.timedelta(minutes=i))
        ids.append(emu.add("Opportunity", Amount=100.0 * (i + 1), CloseDate="2026-02-27",
                           StageName="Closed Won" if i < won else "Closed Lost"))
    return ids


def test_query_all_iter_pages_lazily_in_order(emu: SalesforceEmulator, tls: TlsFiles) -> None:
    ids = seed_deals(emu, won=7, lost=2)
    sf = connect(emu, tls)
    soql = ("SELECT Id, Amount, CloseDate, StageName, IsWon, SystemModstamp FROM Opportunity "
            "WHERE IsWon = true AND SystemModstamp >= 2026-03-01T12:00:00Z "
            "ORDER BY SystemModstamp DESC, Id")
    records = list(sf.query_all_iter(soql))
    assert [r["Id"] for r in records] == ids[:7][::-1]
    assert records[0]["Amount"] == 700.0 and records[0]["CloseDate"] == "2026-02-27"
    assert records[-1]["SystemModstamp"] == "2026-03-01T12:00:00.000+0000"
    assert records[0]["attributes"]["type"] == "Opportunity"
    assert emu.count("GET", "/query") == 3  # 3 + 3 + 1 records
    first = sf.query(soql)
    assert first["totalSize"] == 7 and not first["done"]
    assert first["nextRecordsUrl"].startswith("/services/data/v59.0/query/01g")


def test_relationship_fields_in_and_parenthesised_or(
    emu: SalesforceEmulator, tls: TlsFiles
) -> None:
    opp, other = seed_deals(emu, won=2)
    alice = emu.add("Contact", FirstName="Alice", LastName="A", Email="alice@example.com")
    bob = emu.add("Contact", LastName="B", Email="bob@example.com")
    emu.add("OpportunityContactRole", OpportunityId=opp, ContactId=alice, IsPrimary=True)
    emu.add("OpportunityContactRole", OpportunityId=opp, ContactId=bob, Role="Influencer")
    emu.add("OpportunityContactRole", OpportunityId=other, ContactId=bob, Role="Decision Maker")
    sf = connect(emu, tls)
    rows = sf.query_all(
        "SELECT OpportunityId, Contact.Email, Contact.Name, IsPrimary FROM OpportunityContactRole "
        f"WHERE OpportunityId IN ('{opp}', '{other[:15]}') "
        "AND (IsPrimary = true OR Role = 'decision maker') ORDER BY Contact.Email"
    )["records"]
    assert [(r["OpportunityId"], r["Contact"]["Email"]) for r in rows] == [
        (opp, "alice@example.com"), (other, "bob@example.com")]
    assert rows[0]["Contact"]["Name"] == "Alice A"
    assert rows[0]["Contact"]["attributes"]["type"] == "Contact"


def test_nulls_negation_and_null_ordering(emu: SalesforceEmulator, tls: TlsFiles) -> None:
    with_email = emu.add("Lead", LastName="A", Email="a@example.com", GCLID__c="g-a")
    without = emu.add("Lead", LastName="B")
    converted = emu.add("Lead", LastName="C", Email="c@example.com", IsConverted=True)
    sf = connect(emu, tls)

    def ids(where: str, order: str = "LastName") -> list[str]:
        soql = f"SELECT Id FROM Lead WHERE {where} ORDER BY {order}"
        return [r["Id"] for r in sf.query_all(soql)["records"]]

    assert ids("Email = null") == [without]
    assert ids("Email != null AND NOT (IsConverted = true)") == [with_email]
    assert ids("LastName NOT IN ('a', 'c')") == [without]
    assert ids("Id != null", "Email DESC NULLS FIRST") == [without, converted, with_email]
    assert ids("CreatedDate <= 2026-03-01T12:00:00.000+00:00", "GCLID__c") == [
        without, converted, with_email]


def test_query_errors_map_to_sdk_exceptions(emu: SalesforceEmulator, tls: TlsFiles) -> None:
    sf = connect(emu, tls)
    cases = {
        "SELECT Id, CurrencyIsoCode FROM Opportunity": "INVALID_FIELD",
        "SELECT Id FROM Opportunity WHERE SystemModstamp > '2026-01-01T00:00:00Z'": "INVALID_FIELD",
        "SELECT Id FROM Opportunity WHERE IsWon = true AND Amount > 1 OR Amount < 0":
            "MALFORMED_QUERY",
        "SELECT Id FROM Opportunity WHERE": "MALFORMED_QUERY",
        "SELECT Id FROM Opportunity LIMIT": "MALFORMED_QUERY",
        "SELECT Id FROM Account": "INVALID_TYPE",
    }
    for soql, code in cases.items():
        with pytest.raises(SalesforceMalformedRequest) as info:
            sf.query(soql)
        assert info.value.content[0]["errorCode"] == code, soql


def test_currency_field_only_in_multi_currency_orgs(tls: TlsFiles) -> None:
    with SalesforceEmulator(tls, multi_currency=True, currency="EUR") as emu:
        emu.add("Opportunity", StageName="Closed Won", Amount=5.0)
        emu.add("Opportunity", StageName="Closed Won", Amount=6.0, CurrencyIsoCode="USD")
        sf = connect(emu, tls)
        rows = sf.query("SELECT CurrencyIsoCode FROM Opportunity ORDER BY Amount")["records"]
        assert [r["CurrencyIsoCode"] for r in rows] == ["EUR", "USD"]


def test_expired_session_and_api_budget(tls: TlsFiles) -> None:
    with SalesforceEmulator(tls, api_limit=3) as emu:
        sf = connect(emu, tls)
        sf.query("SELECT Id FROM Lead")
        assert sf.api_usage["api-usage"] == (1, 3)
        sf.limits()
        sf.query("SELECT COUNT() FROM Lead")
        assert sf.api_usage["api-usage"] == (3, 3)
        with pytest.raises(SalesforceRefusedRequest) as refused:
            sf.query("SELECT Id FROM Lead")
        assert refused.value.content[0]["errorCode"] == "REQUEST_LIMIT_EXCEEDED"
        emu.api_usage = 0
        emu.expire_sessions()
        with pytest.raises(SalesforceExpiredSession) as expired:
            sf.query("SELECT Id FROM Lead")
        assert expired.value.content == [
            {"errorCode": "INVALID_SESSION_ID", "message": "Session expired or invalid"}]


def test_bulk2_query_polls_and_pages_csv(emu: SalesforceEmulator, tls: TlsFiles) -> None:
    ids = seed_deals(emu, won=5)
    gone = emu.add("Opportunity", StageName="Closed Won", Amount=1.5)
    emu.delete("Opportunity", gone)
    sf = connect(emu, tls)
    soql = "SELECT Id, Amount, IsWon, SystemModstamp, ContactId FROM Opportunity WHERE IsWon = true"
    chunks = list(sf.bulk2.Opportunity.query(soql, max_records=2, wait=0))
    rows = [row for chunk in chunks for row in csv.DictReader(io.StringIO(chunk))]
    assert len(chunks) == 3
    assert [r["Id"] for r in rows] == ids
    assert rows[0] == {"Id": ids[0], "Amount": "100.0", "IsWon": "true",
                       "SystemModstamp": "2026-03-01T12:00:00.000Z", "ContactId": ""}
    assert emu.count("GET", "/jobs/query/") == 3 + 3  # 3 status polls, 3 result pages
    everything = list(sf.bulk2.Opportunity.query_all(soql, wait=0))
    assert gone in everything[0]


def test_edits_during_a_run_bump_system_modstamp(emu: SalesforceEmulator, tls: TlsFiles) -> None:
    first, second = seed_deals(emu, won=2)
    sf = connect(emu, tls)
    watermark = "2026-03-01T12:01:00Z"
    page = sf.query(f"SELECT Id FROM Opportunity WHERE SystemModstamp > {watermark}")
    assert page["totalSize"] == 0
    emu.advance(minutes=59)  # the clock stood at T0 + 1 min after seeding
    emu.update("Opportunity", first, Amount=999.0, StageName="Closed Lost")
    rows = sf.query(f"SELECT Id, Amount, IsWon, LastModifiedDate FROM Opportunity "
                    f"WHERE SystemModstamp > {watermark}")["records"]
    assert [(r["Id"], r["Amount"], r["IsWon"]) for r in rows] == [(first, 999.0, False)]
    assert rows[0]["LastModifiedDate"] == "2026-03-01T13:00:00.000+0000"
    assert emu.get("Opportunity", second)["SystemModstamp"] == T0 + dt.timedelta(minutes=1)


def test_write_back_single_and_composite(emu: SalesforceEmulator, tls: TlsFiles) -> None:
    lead = emu.add("Lead", LastName="L", Company="Acme")
    contacts = [emu.add("Contact", LastName=f"C{i}") for i in range(2)]
    sf = connect(emu, tls)
    assert sf.Lead.update(lead, {"GCLID__c": "gclid-1"}) == 204
    assert emu.get("Lead", lead)["GCLID__c"] == "gclid-1"

    def patch(records: list[dict[str, object]], all_or_none: bool) -> list[dict[str, object]]:
        body = {"allOrNone": all_or_none, "records": records}
        return sf.restful("composite/sobjects", method="PATCH", data=json.dumps(body))

    batch = [{"attributes": {"type": "Contact"}, "id": contacts[0], "GCLID__c": "g0"},
             {"attributes": {"type": "Contact"}, "id": contacts[1], "IsDeleted": True},
             {"attributes": {"type": "Contact"}, "id": "003000000000000AAA", "GCLID__c": "x"}]
    rolled_back = patch(batch, all_or_none=True)
    assert [r["errors"][0]["statusCode"] for r in rolled_back] == [
        "ALL_OR_NONE_OPERATION_ROLLED_BACK", "INVALID_FIELD_FOR_INSERT_UPDATE",
        "INVALID_CROSS_REFERENCE_KEY"]
    assert "GCLID__c" not in emu.get("Contact", contacts[0])
    partial = patch(batch, all_or_none=False)
    assert [r["success"] for r in partial] == [True, False, False]
    assert emu.get("Contact", contacts[0])["GCLID__c"] == "g0"
    with pytest.raises(SalesforceMalformedRequest):
        patch(batch * 67, all_or_none=False)
    with pytest.raises(SalesforceMalformedRequest):
        sf.Contact.update(contacts[0], {"NoSuchField__c": 1})


def test_describe_sobjects_and_limits(emu: SalesforceEmulator, tls: TlsFiles) -> None:
    sf = connect(emu, tls)
    fields = {f["name"]: f for f in sf.Lead.describe()["fields"]}
    assert fields["GCLID__c"]["custom"] and fields["GCLID__c"]["updateable"]
    assert fields["ConvertedContactId"]["referenceTo"] == ["Contact"]
    assert "CurrencyIsoCode" not in {f["name"] for f in sf.Opportunity.describe()["fields"]}
    assert {"Opportunity", "OpportunityContactRole"} <= {
        s["name"] for s in sf.describe()["sobjects"]}
    assert sf.limits()["DailyApiRequests"]["Max"] == 15000


def test_oauth_flows_issue_working_tokens(emu: SalesforceEmulator, tls: TlsFiles) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    emu.add_connected_app("cid", client_secret="shh", refresh_token="rt-1",
                          jwt_public_key=public_pem, username="ops@example.com")
    url = f"{emu.base_url}/services/oauth2/token"
    session = http(tls)

    def assertion(**claims: object) -> str:
        base = {"iss": "cid", "sub": "ops@example.com", "aud": "https://login.salesforce.com",
                "exp": int(dt.datetime.now(dt.UTC).timestamp()) + 300}
        return jwt.encode(base | claims, key, algorithm="RS256")

    jwt_grant = "urn:ietf:params:oauth:grant-type:jwt-bearer"
    good = [
        {"grant_type": "refresh_token", "client_id": "cid", "refresh_token": "rt-1"},
        {"grant_type": "client_credentials", "client_id": "cid", "client_secret": "shh"},
        {"grant_type": jwt_grant, "assertion": assertion()},
    ]
    for form in good:
        token = session.post(url, data=form).json()
        assert token["instance_url"] == emu.base_url and token["token_type"] == "Bearer"
        connect(emu, tls, token["access_token"]).query("SELECT Id FROM Contact")
    bad = [
        ({"grant_type": "refresh_token", "client_id": "cid", "refresh_token": "nope"},
         "invalid_grant"),
        ({"grant_type": "client_credentials", "client_id": "cid", "client_secret": "x"},
         "invalid_client"),
        ({"grant_type": jwt_grant, "assertion": assertion(aud="https://evil.test")},
         "invalid_grant"),
        ({"grant_type": jwt_grant, "assertion": assertion(aud=emu.base_url)},  # the My Domain
         "invalid_grant"),
        ({"grant_type": jwt_grant, "assertion": assertion(sub="someone@else")}, "invalid_grant"),
        ({"grant_type": "password", "client_id": "cid"}, "unsupported_grant_type"),
    ]
    for form, error in bad:
        response = session.post(url, data=form)
        assert (response.status_code, response.json()["error"]) == (400, error), form


def test_injected_fault_is_served_once(emu: SalesforceEmulator, tls: TlsFiles) -> None:
    sf = connect(emu, tls)
    emu.inject_fault(503, [{"errorCode": "SERVER_UNAVAILABLE", "message": "down"}],
                     path_contains="/query")
    with pytest.raises(SalesforceGeneralError) as info:
        sf.query("SELECT Id FROM Contact")
    assert info.value.status == 503
    assert sf.query("SELECT Id FROM Contact")["done"]
    assert emu.count(path_contains="/query") == 2
