"""hubspot-api-client, unmodified, against the HubSpot emulator over plain HTTP."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from typing import Any

import pytest
from hubspot import HubSpot
from hubspot.crm import associations, contacts, pipelines
from hubspot.crm.associations.v4 import BatchInputPublicFetchAssociationsBatchRequest
from hubspot.crm.contacts import (
    BatchInputSimplePublicObjectBatchInput,
    BatchReadInputSimplePublicObjectId,
)
from hubspot.crm.deals import ApiException, PublicObjectSearchRequest

from tests.emulators.hubspot import HubSpotEmulator, to_millis

T0 = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
TOKEN = "pat-test"


@pytest.fixture
def emu() -> Iterator[HubSpotEmulator]:
    emulator = HubSpotEmulator(tokens={TOKEN}, search_per_second=None, burst_limit=None)
    emulator.set_clock(T0)
    with emulator:
        yield emulator


def client(emu: HubSpotEmulator, token: str = TOKEN) -> HubSpot:
    return HubSpot(access_token=token, host=emu.base_url)


def search(hs: HubSpot, filters: list[dict[str, Any]], **kwargs: Any) -> Any:
    request = PublicObjectSearchRequest(filter_groups=[{"filters": filters}], **kwargs)
    return hs.crm.deals.search_api.do_search(public_object_search_request=request)


def seed(emu: HubSpotEmulator, count: int) -> list[str]:
    ids = []
    for i in range(count):
        emu.set_clock(T0 + dt.timedelta(minutes=i))
        stage = "closedwon" if i % 2 == 0 else "contractsent"
        ids.append(emu.add_deal(dealname=f"Deal {i}", amount=str(100 * (i + 1)), dealstage=stage,
                                closedate=T0 - dt.timedelta(days=1)))
    return ids


def test_search_filters_sorts_and_pages(emu: HubSpotEmulator) -> None:
    ids = seed(emu, 9)
    hs = client(emu)
    since = to_millis(T0 + dt.timedelta(minutes=2))
    filters = [{"propertyName": "hs_is_closed_won", "operator": "EQ", "value": "true"},
               {"propertyName": "hs_lastmodifieddate", "operator": "GTE", "value": str(since)}]
    sort = [{"propertyName": "hs_lastmodifieddate", "direction": "ASCENDING"}]
    seen, after, pages = [], None, 0
    while True:
        page = search(hs, filters, sorts=sort, properties=["amount", "dealstage"], limit=2,
                      after=after)
        pages += 1
        seen += page.results
        if page.paging is None:
            break
        after = page.paging.next.after
    assert [d.id for d in seen] == [ids[2], ids[4], ids[6], ids[8]] and pages == 2
    assert page.total == 4
    first = seen[0].properties
    assert first["amount"] == "300" and first["dealstage"] == "closedwon"
    assert first["hs_lastmodifieddate"] == "2026-03-01T12:02:00.000Z"
    assert set(first) == {"amount", "dealstage", "createdate", "hs_lastmodifieddate",
                          "hs_object_id"}
    assert seen[0].updated_at == T0 + dt.timedelta(minutes=2)
    iso = search(hs, [{"propertyName": "hs_lastmodifieddate", "operator": "GT",
                       "value": "2026-03-01T12:07:00Z"}])
    assert [d.id for d in iso.results] == [ids[8]]


def test_search_operators_and_filter_groups(emu: HubSpotEmulator) -> None:
    ids = seed(emu, 6)
    emu.update("deals", ids[1], deal_currency_code="EUR")
    hs = client(emu)
    cases = [
        ([{"propertyName": "amount", "operator": "LT", "value": "250"}], ids[:2]),
        ([{"propertyName": "dealstage", "operator": "IN", "values": ["closedwon"]}], ids[::2]),
        ([{"propertyName": "dealstage", "operator": "NEQ", "value": "closedwon"}], ids[1::2]),
        ([{"propertyName": "deal_currency_code", "operator": "HAS_PROPERTY"}], [ids[1]]),
        ([{"propertyName": "amount", "operator": "BETWEEN", "value": "200", "highValue": "300"}],
         ids[1:3]),
    ]
    for filters, expected in cases:
        assert [d.id for d in search(hs, filters).results] == expected, filters
    either = PublicObjectSearchRequest(filter_groups=[
        {"filters": [{"propertyName": "amount", "operator": "EQ", "value": "100"}]},
        {"filters": [{"propertyName": "amount", "operator": "GTE", "value": "600"}]}],
        sorts=[{"propertyName": "amount", "direction": "DESCENDING"}])
    result = hs.crm.deals.search_api.do_search(public_object_search_request=either)
    assert [d.id for d in result.results] == [ids[5], ids[0]]


def test_search_rejects_what_hubspot_rejects(emu: HubSpotEmulator) -> None:
    hs = client(emu)
    bad = [
        {"limit": 201},
        {"sorts": [{"propertyName": "amount"}, {"propertyName": "dealname"}]},
        {"filter_groups": [{"filters": [{"propertyName": "hs_object_id", "operator": "IN",
                                         "values": [str(10**12 + i) for i in range(300)]}]}]},
        {"filter_groups": [{"filters": [{"propertyName": "nope", "operator": "EQ",
                                         "value": "1"}]}]},
        {"filter_groups": [{"filters": []}] * 6},
    ]
    for kwargs in bad:
        with pytest.raises(ApiException) as info:
            hs.crm.deals.search_api.do_search(PublicObjectSearchRequest(**kwargs))
        assert info.value.status == 400
        assert json.loads(info.value.body)["category"] == "VALIDATION_ERROR"


def test_search_stops_at_ten_thousand_results() -> None:
    with HubSpotEmulator(tokens={TOKEN}, search_per_second=None) as emu:
        for i in range(10_050):
            emu.add_deal(dealname=f"d{i}")
        hs = client(emu)
        page = hs.crm.deals.search_api.do_search(PublicObjectSearchRequest(limit=200, after="9800"))
        assert page.total == 10_050 and len(page.results) == 200
        assert page.paging.next.after == "10000"
        with pytest.raises(ApiException) as info:
            hs.crm.deals.search_api.do_search(PublicObjectSearchRequest(limit=200, after="10000"))
        assert info.value.status == 400


def test_associations_and_contacts_batch_read(emu: HubSpotEmulator) -> None:
    alice = emu.add_contact(email="alice@example.com", hs_google_click_id="g-1")
    bob = emu.add_contact(email="bob@example.com", phone="+15550100")
    deal = emu.add_deal(contacts=[bob, alice], dealstage="closedwon")
    lonely = emu.add_deal(dealstage="closedwon")
    hs = client(emu)
    assoc = hs.crm.associations.v4.batch_api.get_page(
        "deals", "contacts", BatchInputPublicFetchAssociationsBatchRequest(
            inputs=[{"id": deal}, {"id": lonely}]))
    assert [(r._from.id, [t.to_object_id for t in r.to]) for r in assoc.results] == [
        (deal, [alice, bob])]  # integers on the wire; the SDK model makes them str
    assert assoc.results[0].to[0].association_types[0].type_id == 3
    assert assoc.errors[0].context == {"fromObjectId": [lonely]}

    read = hs.crm.contacts.batch_api.read(BatchReadInputSimplePublicObjectId(
        inputs=[{"id": alice}, {"id": bob}, {"id": "999"}],
        properties=["email", "phone", "hs_google_click_id"]))
    by_id = {c.id: c.properties for c in read.results}
    assert by_id[alice]["hs_google_click_id"] == "g-1" and by_id[bob]["phone"] == "+15550100"
    assert by_id[alice]["phone"] is None
    assert read.errors[0].category == "OBJECT_NOT_FOUND" and read.errors[0].context == {
        "ids": ["999"]}
    by_email = hs.crm.contacts.batch_api.read(BatchReadInputSimplePublicObjectId(
        inputs=[{"id": "bob@example.com"}], properties=["email"], id_property="email"))
    assert [c.id for c in by_email.results] == [bob]
    with pytest.raises(associations.v4.ApiException) as info:  # each API has its own class
        hs.crm.associations.v4.batch_api.get_page("deals", "contacts", {
            "inputs": [{"id": str(i)} for i in range(1001)]})
    assert info.value.status == 400


def test_batch_update_writes_back_and_bumps_modified(emu: HubSpotEmulator) -> None:
    contact = emu.add_contact(email="c@example.com")
    emu.set_clock(T0 + dt.timedelta(hours=2))
    hs = client(emu)
    done = hs.crm.contacts.batch_api.update(BatchInputSimplePublicObjectBatchInput(
        inputs=[{"id": contact, "properties": {"hs_google_click_id": "g-9"}}]))
    assert done.results[0].properties["hs_google_click_id"] == "g-9"
    stored = emu.get("contacts", contact)
    assert stored["hs_google_click_id"] == "g-9"
    assert stored["lastmodifieddate"] == str(to_millis(T0 + dt.timedelta(hours=2)))
    with pytest.raises(contacts.ApiException) as info:
        hs.crm.contacts.batch_api.update(BatchInputSimplePublicObjectBatchInput(
            inputs=[{"id": contact, "properties": {"hs_analytics_source": "PAID_SEARCH"}}]))
    assert info.value.status == 400


def test_edit_helper_makes_deal_visible_to_incremental_search(emu: HubSpotEmulator) -> None:
    _, second = seed(emu, 2)
    hs = client(emu)
    watermark = [{"propertyName": "hs_lastmodifieddate", "operator": "GT",
                  "value": str(to_millis(T0 + dt.timedelta(minutes=1)))}]
    assert search(hs, watermark).total == 0
    emu.set_clock(T0 + dt.timedelta(minutes=30))
    emu.update("deals", second, dealstage="closedwon", amount="5000")
    found = search(hs, watermark, properties=["amount", "hs_is_closed_won"]).results
    assert [(d.id, d.properties["amount"], d.properties["hs_is_closed_won"]) for d in found] == [
        (second, "5000", "true")]


def test_archived_deals_leave_search_and_batch_read_and_are_listed_with_archived_at(
    emu: HubSpotEmulator,
) -> None:
    ids = seed(emu, 5)
    emu.set_clock(T0 + dt.timedelta(hours=1))
    for deal_id in ids[1:4]:
        emu.archive("deals", deal_id)
    hs = client(emu)
    deals = hs.crm.deals
    assert [d.id for d in search(hs, []).results] == [ids[0], ids[4]]
    live = deals.basic_api.get_page(limit=100, properties=["amount"])
    assert [d.id for d in live.results] == [ids[0], ids[4]] and live.paging is None
    first = deals.basic_api.get_page(limit=2, archived=True, properties=["amount", "dealstage"])
    assert [(d.id, d.archived, d.archived_at) for d in first.results] == [
        (ids[1], True, T0 + dt.timedelta(hours=1)), (ids[2], True, T0 + dt.timedelta(hours=1))]
    assert first.results[0].properties["amount"] == "200"
    assert first.results[0].properties["dealstage"] == "contractsent"
    rest = deals.basic_api.get_page(limit=2, archived=True, after=first.paging.next.after)
    assert [d.id for d in rest.results] == [ids[3]] and rest.paging is None
    with pytest.raises(ApiException) as info:
        deals.basic_api.get_page(limit=101, archived=True)
    assert info.value.status == 400
    read = deals.batch_api.read(BatchReadInputSimplePublicObjectId(
        inputs=[{"id": ids[0]}, {"id": ids[1]}], properties=["amount"]))
    assert [d.id for d in read.results] == [ids[0]]  # 207: the archived one is not found


def test_rate_limits_surface_as_429_with_retry_after() -> None:
    with HubSpotEmulator(tokens={TOKEN}, search_per_second=5, burst_limit=8) as emu:
        hs = client(emu)
        statuses = []
        for _ in range(6):
            try:
                hs.crm.deals.search_api.do_search(PublicObjectSearchRequest(limit=1))
                statuses.append(200)
            except ApiException as exc:
                statuses.append(exc.status)
                assert exc.headers["Retry-After"] == "1"
                assert json.loads(exc.body)["policyName"] == "SECONDLY"
        assert statuses == [200] * 5 + [429]
        # POSTs only: urllib3's default Retry silently sleeps Retry-After and retries a GET 429
        read = BatchReadInputSimplePublicObjectId(inputs=[], properties=["email"])
        hs.crm.contacts.batch_api.read(read)
        hs.crm.contacts.batch_api.read(read)
        with pytest.raises(contacts.ApiException) as info:
            hs.crm.contacts.batch_api.read(read)
        assert info.value.status == 429 and int(info.value.headers["Retry-After"]) >= 1
        assert json.loads(info.value.body)["policyName"] == "TEN_SECONDLY_ROLLING"


def test_auth_faults_pipelines_and_properties(emu: HubSpotEmulator) -> None:
    with pytest.raises(ApiException) as info:
        client(emu, "wrong").crm.deals.search_api.do_search(PublicObjectSearchRequest())
    assert info.value.status == 401
    assert json.loads(info.value.body)["category"] == "INVALID_AUTHENTICATION"
    hs = client(emu)
    emu.inject_fault(502, path_contains="/pipelines/")
    with pytest.raises(pipelines.ApiException) as bad_gateway:
        hs.crm.pipelines.pipelines_api.get_all("deals")
    assert bad_gateway.value.status == 502
    stages = hs.crm.pipelines.pipelines_api.get_all("deals").results[0].stages
    won = next(s for s in stages if s.id == "closedwon")
    assert won.metadata == {"isClosed": "true", "probability": "1.0"}
    emu.add_property("deals", "gclid", "string")
    names = {p.name for p in hs.crm.properties.core_api.get_all("deals").results}
    assert {"amount", "hs_is_closed_won", "gclid"} <= names
    assert emu.count("GET", "/crm/v3/pipelines/deals") == 2
