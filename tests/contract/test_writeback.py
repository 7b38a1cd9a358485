"""Attribution write-back through the real Salesforce and HubSpot SDKs against the emulators,
on SQLite and PostgreSQL: what lands on the CRM record, idempotence, batching, refusals."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from pydantic import SecretStr, ValidationError
from sqlalchemy import Engine, select

from revsync.collect.importer import import_identities, import_touchpoints
from revsync.config.mapping import ATTRIBUTION_KEYS, RevsyncConfig, SalesforceSource
from revsync.config.settings import Settings
from revsync.doctor import Status
from revsync.store.schema import metadata, quarantine, writebacks
from revsync.sync.factory import build_sources
from revsync.sync.job import SyncJob
from revsync.sync.summary import RunSummary
from tests.emulators.hubspot import HubSpotEmulator
from tests.emulators.salesforce import SalesforceEmulator
from tests.emulators.tls import TlsFiles

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
NOW = T0 + timedelta(days=10)
GCLID, FBCLID = "Cj0KCQiAabc123", "IwAR_Zz9fbclid"
PAID = f"https://x.com/?gclid={GCLID}&utm_source=google&utm_medium=cpc&utm_campaign=brand"
SOCIAL = f"https://x.com/?fbclid={FBCLID}&utm_source=facebook&utm_medium=paid_social"
EMAIL = "https://x.com/?utm_source=newsletter&utm_medium=email&utm_campaign=march"
DIRECT = "https://x.com/pricing"
SF_SETTINGS = Settings(
    salesforce_client_id="cid", salesforce_client_secret="shh", salesforce_refresh_token="rt"
)
HS_SETTINGS = Settings(hubspot_access_token=SecretStr("pat-test"))


class SalesforceCrm:
    """An org whose Contacts and Leads carry the default RevSync_* custom fields."""

    name = "sf"
    settings = SF_SETTINGS

    def __init__(self, tls: TlsFiles) -> None:
        self.tls = tls
        self.fields = SalesforceSource.model_validate(
            {"type": "salesforce", "name": "sf", "instance_url": "https://org"}
        ).attribution_fields
        custom = {n: "datetime" if n.endswith("At__c") else "string" for n in self.fields.values()}
        self.emu = SalesforceEmulator(tls, custom_fields={"Contact": custom, "Lead": custom})
        self.emu.set_clock(T0)
        self.emu.add_connected_app("cid", client_secret="shh", refresh_token="rt")

    def block(self, **overrides: Any) -> dict[str, Any]:
        url = self.emu.base_url
        return {"type": "salesforce", "name": "sf", "currency": "USD", "push_attribution": True,
                "max_attempts": 1, "instance_url": url, "token_url": f"{url}/services/oauth2/token",
                "ca_bundle": str(self.tls.ca_cert)} | overrides  # fmt: skip

    def person(self, lead: bool = False) -> str:
        if lead:
            return self.emu.add("Lead", LastName="P", Company="C")
        return self.emu.add("Contact", LastName="P")

    def record(self, crm_id: str) -> dict[str, Any]:
        sobject = "Lead" if crm_id.startswith("00Q") else "Contact"
        stored = self.emu.get(sobject, crm_id)
        out = {key: stored.get(name) for key, name in self.fields.items()}
        for key in ("first_touch_at", "last_touch_at"):
            if out[key] is not None:
                out[key] = out[key].strftime("%Y-%m-%dT%H:%M:%SZ")
        return out

    def remove(self, crm_id: str) -> None:
        self.emu.delete("Contact", crm_id)

    def batches(self) -> list[int]:
        return [len(json.loads(r.body)["records"]) for r in self.emu.requests
                if r.method == "PATCH" and r.path.endswith("/composite/sobjects")]  # fmt: skip


class HubSpotCrm:
    """A portal whose contacts carry the default revsync_* properties."""

    name = "hs"
    settings = HS_SETTINGS

    def __init__(self) -> None:
        self.emu = HubSpotEmulator(search_per_second=None, burst_limit=None)
        self.emu.set_clock(T0)
        for key in ATTRIBUTION_KEYS:
            kind = "datetime" if key.endswith("_at") else "string"
            self.emu.add_property("contacts", f"revsync_{key}", kind)

    def block(self, **overrides: Any) -> dict[str, Any]:
        return {"type": "hubspot", "name": "hs", "host": self.emu.base_url, "max_attempts": 1,
                "push_attribution": True, "timeout_seconds": 5} | overrides  # fmt: skip

    def person(self, lead: bool = False) -> str:
        return self.emu.add_contact(lifecyclestage="lead" if lead else "customer")

    def record(self, crm_id: str) -> dict[str, Any]:
        stored = self.emu.get("contacts", crm_id)
        out = {key: stored.get(f"revsync_{key}") for key in ATTRIBUTION_KEYS}
        for key in ("first_touch_at", "last_touch_at"):
            if out[key] is not None:
                moment = datetime.fromtimestamp(int(out[key]) / 1000, UTC)
                out[key] = moment.strftime("%Y-%m-%dT%H:%M:%SZ")
        return out

    def remove(self, crm_id: str) -> None:
        del self.emu._records["contacts"][crm_id]  # HubSpot archives: the id is gone

    def batches(self) -> list[int]:
        return [len(json.loads(r.body)["inputs"]) for r in self.emu.requests
                if r.path.endswith("/contacts/batch/update")]  # fmt: skip


Crm = SalesforceCrm | HubSpotCrm


@pytest.fixture(params=["salesforce", "hubspot"])
def crm(request: pytest.FixtureRequest, tls: TlsFiles) -> Iterator[Crm]:
    found: Crm = SalesforceCrm(tls) if request.param == "salesforce" else HubSpotCrm()
    with found.emu:
        yield found


def seed(
    engine: Engine, tmp: Path, touches: list[tuple[str, datetime, str]], leads: dict[str, str]
) -> None:
    """Touchpoints ``(visitor, time, landing URL)`` and leads ``{visitor: crm_id}``."""
    batch = uuid.uuid4().hex[:8]
    tp, ids = tmp / f"tp-{batch}.csv", tmp / f"id-{batch}.csv"
    tp.write_text("visitor_id,occurred_at,landing_url\n" + "".join(
        f"{v},{t.isoformat()},{url}\n" for v, t, url in touches))  # fmt: skip
    ids.write_text("visitor_id,observed_at,crm_id\n" + "".join(
        f"{v},{T0.isoformat()},{c}\n" for v, c in leads.items()))  # fmt: skip
    assert import_touchpoints(engine, tp).rejected == 0
    assert import_identities(engine, ids).rejected == 0


def run(engine: Engine, crm: Crm, at: datetime = NOW, **overrides: Any) -> RunSummary:
    mapping = RevsyncConfig.model_validate({"sources": [crm.block(**overrides)]})
    job = SyncJob(engine, mapping, build_sources(mapping, crm.settings), [], clock=lambda: at)
    return job.run()


def test_first_and_last_touch_land_on_the_crm_record_once(
    engine: Engine, crm: Crm, tmp_path: Path
) -> None:
    contact, lead = crm.person(), crm.person(lead=True)
    seed(engine, tmp_path, [
        ("v1", T0, PAID),
        ("v1", T0 + timedelta(days=1), EMAIL),
        ("v2", T0 + timedelta(days=2), DIRECT),  # a second browser of the same person
        ("v3", T0 + timedelta(hours=5), DIRECT),
    ], {"v1": contact, "v2": contact, "v3": lead})  # fmt: skip

    first = run(engine, crm)

    assert first.status == "ok" and first.writeback == {crm.name: {"pushed": 2, "failed": 0}}
    assert first.as_dict()["writeback"] == first.writeback
    assert crm.record(contact) == {
        "first_touch_channel": "Paid Search", "first_touch_source": "google",
        "first_touch_medium": "cpc", "first_touch_campaign": "brand",
        "first_touch_click_id": GCLID, "first_touch_click_id_type": "gclid",
        "first_touch_at": "2026-03-01T12:00:00Z",
        # the later direct visit does not replace the email campaign
        "last_touch_channel": "Email", "last_touch_source": "newsletter",
        "last_touch_medium": "email", "last_touch_campaign": "march",
        "last_touch_click_id": None, "last_touch_click_id_type": None,
        "last_touch_at": "2026-03-02T12:00:00Z",
    }  # fmt: skip
    direct = crm.record(lead)  # only direct visits: the last one is the last touch
    assert direct["first_touch_channel"] == direct["last_touch_channel"] == "Direct"
    assert direct["last_touch_at"] == "2026-03-01T17:00:00Z" and direct["last_touch_source"] is None
    assert crm.batches() == [2]

    second = run(engine, crm, NOW + timedelta(hours=1))

    assert second.writeback == {crm.name: {"pushed": 0, "failed": 0}}
    assert crm.batches() == [2]  # nothing sent
    with engine.connect() as conn:
        rows = conn.execute(select(writebacks.c.source, writebacks.c.error)).all()
    assert sorted(rows) == [(crm.name, None), (crm.name, None)]


def test_a_new_touchpoint_changes_last_touch_and_is_pushed_again(
    engine: Engine, crm: Crm, tmp_path: Path
) -> None:
    contact, other = crm.person(), crm.person()
    seed(engine, tmp_path, [("v1", T0, PAID), ("v2", T0, EMAIL)], {"v1": contact, "v2": other})
    assert run(engine, crm).writeback[crm.name]["pushed"] == 2
    assert crm.record(contact)["last_touch_click_id"] == GCLID

    seed(engine, tmp_path, [("v1", T0 + timedelta(days=3), SOCIAL)], {})
    again = run(engine, crm, NOW + timedelta(hours=1))

    assert again.writeback == {crm.name: {"pushed": 1, "failed": 0}}
    assert crm.batches()[-1] == 1
    after = crm.record(contact)
    assert (after["first_touch_click_id"], after["first_touch_channel"]) == (GCLID, "Paid Search")
    assert (after["last_touch_channel"], after["last_touch_source"]) == ("Paid Social", "facebook")
    assert (after["last_touch_click_id"], after["last_touch_click_id_type"]) == (FBCLID, "fbclid")
    assert after["last_touch_campaign"] is None  # cleared: the new last touch has none

    seed(engine, tmp_path, [("v1", T0 + timedelta(days=4), DIRECT)], {})
    direct_visit = run(engine, crm, NOW + timedelta(hours=2))
    assert direct_visit.writeback == {crm.name: {"pushed": 0, "failed": 0}}


def test_450_people_go_out_in_batches_within_the_platform_limit(
    engine: Engine, crm: Crm, tmp_path: Path
) -> None:
    people = {f"v{i:03d}": crm.person() for i in range(450)}
    seed(engine, tmp_path, [(v, T0, PAID) for v in people], people)

    summary = run(engine, crm)

    assert summary.writeback == {crm.name: {"pushed": 450, "failed": 0}}
    assert crm.batches() == ([200, 200, 50] if crm.name == "sf" else [100] * 4 + [50])
    assert all(crm.record(c)["first_touch_click_id"] == GCLID for c in people.values())


def test_a_deleted_contact_is_quarantined_and_the_rest_pushed(
    engine: Engine, crm: Crm, tmp_path: Path
) -> None:
    kept, gone = crm.person(), crm.person()
    crm.remove(gone)
    seed(engine, tmp_path, [("v1", T0, PAID), ("v2", T0, EMAIL)], {"v1": kept, "v2": gone})

    summary = run(engine, crm)

    assert summary.status == "partial"
    assert summary.writeback == {crm.name: {"pushed": 1, "failed": 1}}
    assert crm.record(kept)["first_touch_channel"] == "Paid Search"
    [refused] = summary.quarantined
    assert (refused.kind, refused.source, refused.record_id) == ("writeback", crm.name, gone)
    with engine.connect() as conn:
        stored = conn.execute(select(quarantine.c.kind, quarantine.c.record_id)).all()
    assert stored == [("writeback", gone)]
    # a refusal is not retried every run, but again after a day
    assert run(engine, crm, NOW + timedelta(hours=1)).writeback[crm.name]["failed"] == 0
    assert run(engine, crm, NOW + timedelta(days=2)).writeback[crm.name]["failed"] == 1


def test_a_converted_lead_is_written_on_the_contact_it_became(
    engine: Engine, tls: TlsFiles, tmp_path: Path
) -> None:
    """Salesforce refuses updates to a converted Lead (CANNOT_UPDATE_CONVERTED_LEAD): the
    values go onto its ConvertedContactId, once, and nothing is retried."""
    crm = SalesforceCrm(tls)
    with crm.emu:
        lead = crm.person(lead=True)
        contact = crm.person()
        crm.emu.update("Lead", lead, IsConverted=True, ConvertedContactId=contact)
        seed(engine, tmp_path, [("v1", T0, PAID)], {"v1": lead})

        summary = run(engine, crm)

        assert summary.status == "ok" and summary.writeback == {"sf": {"pushed": 1, "failed": 0}}
        assert crm.record(contact)["first_touch_channel"] == "Paid Search"
        assert crm.record(lead)["first_touch_channel"] is None
        again = run(engine, crm, NOW + timedelta(days=2))
        assert again.writeback == {"sf": {"pushed": 0, "failed": 0}}


def test_a_field_the_crm_lacks_is_quarantined_per_record(
    engine: Engine, crm: Crm, tmp_path: Path
) -> None:
    contact = crm.person()
    seed(engine, tmp_path, [("v1", T0, PAID)], {"v1": contact})
    name = "Missing__c" if crm.name == "sf" else "missing_property"

    summary = run(engine, crm, attribution_fields={"first_touch_channel": name})

    assert summary.writeback == {crm.name: {"pushed": 0, "failed": 1}}
    [refused] = summary.quarantined
    assert refused.record_id == contact and name in refused.reason


def test_a_failed_request_is_sent_again_next_run(engine: Engine, crm: Crm, tmp_path: Path) -> None:
    contact = crm.person()
    seed(engine, tmp_path, [("v1", T0, PAID)], {"v1": contact})
    path = "composite/sobjects" if crm.name == "sf" else "batch/update"
    crm.emu.inject_fault(503, {"message": "down"}, path_contains=path)

    failed = run(engine, crm)

    assert failed.status == "ok" and failed.writeback == {crm.name: {"pushed": 0, "failed": 0}}
    assert any("write-back stopped" in w for w in failed.warnings)
    assert crm.record(contact)["first_touch_channel"] is None
    retried = run(engine, crm, NOW + timedelta(minutes=5))
    assert retried.writeback == {crm.name: {"pushed": 1, "failed": 0}}
    assert crm.record(contact)["first_touch_channel"] == "Paid Search"


def test_without_push_attribution_nothing_is_written(
    engine: Engine, crm: Crm, tmp_path: Path
) -> None:
    contact = crm.person()
    seed(engine, tmp_path, [("v1", T0, PAID)], {"v1": contact})
    assert run(engine, crm, push_attribution=False).writeback == {}
    assert crm.batches() == []


SF_BLOCK = {"type": "salesforce", "instance_url": "https://org"}


@pytest.mark.parametrize(
    ("block", "error"),
    [
        (SF_BLOCK | {"attribution_fields": {"first_click": "X__c"}}, "unknown key"),
        (SF_BLOCK | {"attribution_fields": {"first_touch_channel": "a b"}},
         "not a valid field name"),
        (SF_BLOCK | {"attribution_fields": {"first_touch_channel": "X__c",
                                            "last_touch_channel": "x__c"}}, "same field"),
        (SF_BLOCK | {"attribution_fields": {}}, "at least one"),
        ({"type": "hubspot", "attribution_fields": {"first_touch_at": "Upper"}},
         "not a valid field name"),
        ({"type": "file", "path": "d.csv"},  # files cannot write back
         r"file\.push_attribution\n  Extra inputs are not permitted"),
    ],
)  # fmt: skip
def test_attribution_mapping_is_validated(block: dict[str, Any], error: str) -> None:
    source = {"name": "crm", "push_attribution": True} | block
    with pytest.raises(ValidationError, match=error) as caught:
        RevsyncConfig.model_validate({"sources": [source]})
    assert caught.value.error_count() == 1


def test_migrations_match_the_schema(engine: Engine) -> None:
    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), metadata) == []


def test_doctor_checks_the_attribution_fields_exist(crm: Crm) -> None:
    missing = "Absent__c" if crm.name == "sf" else "absent_property"
    mapping = RevsyncConfig.model_validate(
        {"sources": [crm.block(attribution_fields={"first_touch_channel": missing})]}
    )
    [source] = build_sources(mapping, crm.settings)
    results = {r.check: r for r in source.check()}
    failed = [r for r in results.values() if r.status == Status.FAIL]
    expected = {"fields: Contact", "fields: Lead"} if crm.name == "sf" else {"properties: contacts"}
    assert {r.check for r in failed} == expected
    assert all(missing in r.detail for r in failed)
    default = RevsyncConfig.model_validate({"sources": [crm.block()]})
    [source] = build_sources(default, crm.settings)
    assert not [r for r in source.check() if r.status == Status.FAIL]
