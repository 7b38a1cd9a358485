"""The records around HubSpot deals: associated contacts (hashed, with click IDs) and
companies through v4 associations, and the stages each deal entered."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from hubspot.crm import deals
from hubspot.crm.associations.v4 import BatchInputPublicFetchAssociationsBatchRequest
from hubspot.crm.contacts import (
    BatchReadInputSimplePublicObjectId,
)

from revsync.collect.parsing import ParseError, click_id, ga_client_id
from revsync.destinations.pii import InvalidIdentifier, hash_person
from revsync.domain import (
    ClickIds,
    Contact,
    PersonHashes,
    Quarantined,
)
from revsync.errors import RevsyncError
from revsync.sources.hubspot_session import HubSpotSession
from revsync.sources.hubspot_values import (
    entered_stages,
)

if TYPE_CHECKING:
    from revsync.checks import CheckResult

CONTACT_PROPERTIES = ("email", "phone", "mobilephone", "hs_analytics_source")
ASSOCIATIONS_PER_CALL = 1_000
CONTACTS_PER_CALL = 100


@dataclasses.dataclass(frozen=True, slots=True)
class ContactRecord:
    """A deal's contact and its HubSpot original source (``hs_analytics_source``)."""

    contact: Contact
    analytics_source: str | None


class HubSpotRecords(HubSpotSession):
    """Reads the associations, contacts and stage entries of a page of deals."""

    _stage_properties: dict[str, str] | None = None

    def _associated_contacts(self, deal_ids: Sequence[str]) -> dict[str, list[str]]:
        """Deal id -> associated contact ids, in HubSpot's order (deals without any omitted)."""
        return self._associated(deal_ids, "contacts")

    def _primary_companies(self, deal_ids: Sequence[str]) -> dict[str, str]:
        """Deal id -> its primary company (association type 5), else its first company."""
        return {deal_id: ids[0] for deal_id, ids in self._associated(deal_ids, "companies").items()}

    def _stage_property_names(self) -> dict[str, str]:
        """``hs_v2_date_entered_<stage id>`` -> stage id, over every deal pipeline (read once)."""
        if self._stage_properties is None:
            pipelines = self._get("/crm/v3/pipelines/deals")["results"]
            self._stage_properties = {f"hs_v2_date_entered_{s['id']}": s["id"]
                                      for p in pipelines for s in p.get("stages", [])}  # fmt: skip
        return self._stage_properties

    def _check_stage_history(self) -> CheckResult:
        """``revsync doctor`` with ``stage_history``: every stage's entry-date property exists."""
        from revsync.checks import fail, ok

        try:
            names = self._stage_property_names()
            known = {p["name"] for p in self._get("/crm/v3/properties/deals")["results"]}
        except RevsyncError as exc:
            return fail("stage history", str(exc))
        missing = [name for name in names if name not in known]
        if missing:
            return fail(
                "stage history",
                f"{', '.join(missing)} not found on deals: the portal keeps no entry date for "
                "those stages; set stage_history: false (revsync then records the stages it "
                "sees at each sync)",
            )
        return ok("stage history", f"the entry dates of all {len(names)} deal stages are read")

    def _stage_entries(
        self, deal_ids: Sequence[str]
    ) -> dict[str, tuple[tuple[datetime, str], ...]]:
        """Deal id -> the stages it entered and when (``hs_v2_date_entered_<stage id>``, one
        time per stage), by batch read, 100 deals a call: one property per stage of every
        pipeline would overflow a search body's 3,000 characters."""
        stage_of = self._stage_property_names()
        out = {}
        for start in range(0, len(deal_ids), CONTACTS_PER_CALL):
            chunk = deal_ids[start : start + CONTACTS_PER_CALL]
            request = deals.BatchReadInputSimplePublicObjectId(
                inputs=[{"id": deal_id} for deal_id in chunk],
                properties=list(stage_of),
            )
            response = self._call(
                "deal stage read", self._deal_batch_api.read, request, archived=False,
                _request_timeout=self.config.timeout_seconds,
            )  # fmt: skip
            for item in response.results or []:
                out[str(item.id)] = entered_stages(item.properties or {}, stage_of)
        return out

    def _associated(self, deal_ids: Sequence[str], to_type: str) -> dict[str, list[str]]:
        """Deal id -> associated ``to_type`` ids, the primary ones (type 5) first, then in
        HubSpot's order.

        A deal's associations may come a page at a time (the page size is not documented):
        a result with ``paging`` is asked for again with its ``after`` token alongside the
        deal id until none is left.
        """
        out: dict[str, list[str]] = {}
        pending: list[dict[str, str]] = [{"id": deal_id} for deal_id in deal_ids]
        while pending:
            chunk, pending = pending[:ASSOCIATIONS_PER_CALL], pending[ASSOCIATIONS_PER_CALL:]
            response = self._call(
                "association read",
                self._associations_api.get_page,
                "deals",
                to_type,
                BatchInputPublicFetchAssociationsBatchRequest(inputs=chunk),
                _request_timeout=self.config.timeout_seconds,
            )
            for result in response.results or []:
                deal_id = str(result._from.id)
                targets = out.setdefault(deal_id, [])
                for target in result.to or []:
                    primary = any(a.type_id == 5 for a in target.association_types or [])
                    targets.insert(0 if primary else len(targets), str(target.to_object_id))
                following = result.paging.next if result.paging else None
                if following is not None and following.after:
                    pending.append({"id": deal_id, "after": following.after})
        return {deal_id: list(dict.fromkeys(targets)) for deal_id, targets in out.items()}

    def _contacts(
        self, contact_ids: Sequence[str], problems: list[Quarantined]
    ) -> dict[str, ContactRecord]:
        properties = list(
            dict.fromkeys([*CONTACT_PROPERTIES, *self.config.contact_click_id_properties.values()])
        )
        out: dict[str, ContactRecord] = {}
        for start in range(0, len(contact_ids), CONTACTS_PER_CALL):
            chunk = contact_ids[start : start + CONTACTS_PER_CALL]
            request = BatchReadInputSimplePublicObjectId(
                inputs=[{"id": contact_id} for contact_id in chunk], properties=properties
            )
            response = self._call(
                "contact read",
                self._contacts_api.read,
                request,
                _request_timeout=self.config.timeout_seconds,
            )
            for item in response.results or []:
                out[str(item.id)] = self._contact(str(item.id), item.properties or {}, problems)
        return out

    def _contact(
        self, contact_id: str, props: dict[str, Any], problems: list[Quarantined]
    ) -> ContactRecord:
        """A contact; a bad email, phone or click ID is quarantined and left out."""
        found: dict[str, PersonHashes] = {}
        phone = props.get("phone") or props.get("mobilephone")
        for name, email_value, phone_value in (
            ("email", props.get("email"), None),
            ("phone", None, phone),
        ):
            try:
                found[name] = hash_person(email_value, phone_value, self.default_phone_region)
            except InvalidIdentifier as exc:
                reason = str(exc).partition(": ")[2] or str(exc)
                problems.append(Quarantined("contact", contact_id, name, reason, self.name))
        email, by_phone = found.get("email", PersonHashes()), found.get("phone", PersonHashes())
        hashes = dataclasses.replace(email, phone=by_phone.phone, phone_meta=by_phone.phone_meta)
        clicks = self._click_ids(
            "contact", contact_id, props, self.config.contact_click_id_properties, problems
        )
        return ContactRecord(
            Contact(contact_id, hashes, click_ids=clicks), props.get("hs_analytics_source")
        )

    def _click_ids(
        self,
        kind: str,
        record_id: str,
        props: dict[str, Any],
        mapping: dict[str, str],
        problems: list[Quarantined],
    ) -> ClickIds:
        """Click IDs from the mapped properties; a malformed one is quarantined, left out."""
        values: dict[str, str] = {}
        for name, prop in mapping.items():
            raw = props.get(prop)
            try:
                value = ga_client_id(raw) if name == "ga_client_id" else click_id(name, raw)
            except ParseError as exc:
                problems.append(Quarantined(kind, record_id, prop, str(exc), self.name))
                continue
            if value:
                values[name] = value
        return ClickIds(**values)
