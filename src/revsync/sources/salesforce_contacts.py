"""The contacts of Salesforce Opportunities: OpportunityContactRole (primary first), their
hashed email and phone, and click IDs from the Contacts and the Leads they converted from."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from revsync.destinations.pii import InvalidIdentifier, hash_person
from revsync.domain import ClickIds, Contact, PersonHashes, Quarantined
from revsync.sources.salesforce_session import SalesforceSession
from revsync.sources.salesforce_values import boolean, click_ids, text, unique


class SalesforceContacts(SalesforceSession):
    """Reads each page's contacts; a bad value is quarantined and the contact kept."""

    def _contacts(
        self, opp_ids: list[str], problems: list[Quarantined]
    ) -> dict[str, list[Contact]]:
        click_fields = {k: f"Contact.{v}" for k, v in self.config.contact_click_id_fields.items()}
        select = unique(["OpportunityId", "ContactId", "IsPrimary", "Contact.IsDeleted",
                          "Contact.Email", "Contact.Phone", "Contact.MobilePhone",
                          *click_fields.values()])  # fmt: skip
        roles = self._query_in(select, "OpportunityContactRole", "OpportunityId", opp_ids)
        contact_ids = sorted({r["contactid"] for r in roles if r.get("contactid")})
        from_leads = self._lead_click_ids(contact_ids, problems)
        by_opp: dict[str, dict[str, Contact]] = {}
        for role in roles:
            opp_id, contact_id = role["opportunityid"], role.get("contactid")
            mine = by_opp.setdefault(opp_id, {})
            deleted = role.get("contact.isdeleted")
            if not contact_id or deleted is None or boolean(deleted):
                reason = (
                    "the contact role's contact is deleted"
                    if deleted is not None
                    else "the contact role's contact is not found: deleted, or not visible to "
                    "revsync's integration user (check its sharing and profile)"
                )
                problems.append(Quarantined(
                    "contact", opp_id, "ContactId", reason, self.name,
                    {"contact_id": contact_id or ""},
                ))  # fmt: skip
                continue
            if contact_id in mine:
                if boolean(role.get("isprimary")) and not mine[contact_id].is_primary:
                    old = mine[contact_id]
                    mine[contact_id] = Contact(contact_id, old.hashes, True, old.click_ids)
                continue
            hashes = self._hashes(role, opp_id, contact_id, problems)
            reject = self._rejecter(problems, "contact", opp_id, contact_id=contact_id)
            clicks = click_ids(role, click_fields, reject)
            for kind, value in from_leads.get(contact_id, {}).items():
                clicks.setdefault(kind, value)
            mine[contact_id] = Contact(
                contact_id, hashes, boolean(role.get("isprimary")), ClickIds(**clicks)
            )
        return {
            opp_id: sorted(found.values(), key=lambda c: (not c.is_primary, c.crm_id))
            for opp_id, found in by_opp.items()
        }

    def _lead_click_ids(
        self, contact_ids: list[str], problems: list[Quarantined]
    ) -> dict[str, dict[str, str]]:
        fields = self.config.lead_click_id_fields
        if not fields or not contact_ids:
            return {}
        select = unique(["Id", "ConvertedContactId", *fields.values()])
        out: dict[str, dict[str, str]] = {}
        for lead in self._query_in(select, "Lead", "ConvertedContactId", contact_ids):
            reject = self._rejecter(problems, "contact", lead["id"], "Lead.")
            found = click_ids(lead, fields, reject)
            for kind, value in found.items():
                out.setdefault(lead["convertedcontactid"], {}).setdefault(kind, value)
        return out

    def _rejecter(
        self, problems: list[Quarantined], kind: str, record_id: str, prefix: str = "",
        **detail: str,
    ) -> Callable[[str, str], None]:  # fmt: skip
        """A callback quarantining (field, reason) of one record."""

        def reject(field: str, reason: str) -> None:
            problems.append(Quarantined(kind, record_id, prefix + field, reason, self.name, detail))

        return reject

    def _hashes(
        self, role: dict[str, Any], opp_id: str, contact_id: str, problems: list[Quarantined]
    ) -> PersonHashes:
        """Hash email and phone; a bad one is quarantined and the contact kept without it."""
        values = {"email": text(role.get("contact.email")),
                  "phone": text(role.get("contact.phone"))
                  or text(role.get("contact.mobilephone"))}  # fmt: skip
        while True:
            try:
                return hash_person(values["email"], values["phone"], self.default_phone_region)
            except InvalidIdentifier as exc:
                name, _, reason = str(exc).partition(": ")
                values[name] = None
                problems.append(Quarantined(
                    "contact", opp_id, f"Contact.{name.title()}", reason, self.name,
                    {"contact_id": contact_id},
                ))  # fmt: skip
