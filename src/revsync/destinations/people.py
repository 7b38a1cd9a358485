"""Who is behind each visitor of a journey, and whether that person may be uploaded.

A visitor belongs to the contact whose identity linked it to the deal (email, phone or CRM
ID; a click ID on a contact's CRM record). A person's ad consent is the latest consent
signal among the touchpoints of all that person's visitors in the journey; ``None`` when
no touchpoint states one. Every identifier in one event comes from one ``Person``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from revsync.domain import Consent, Contact, Journey, MatchLink, Touch, Touchpoint

CLICK_KINDS = ("gclid", "gbraid", "wbraid", "fbclid")


@dataclass(frozen=True, slots=True)
class Person:
    """One person of a deal: the CRM contact (``None`` when only a deal-level click ID or an
    unlinked visitor is known), the visitors seen as them, and their ad consent."""

    contact: Contact | None
    visitors: frozenset[str] = field(default_factory=frozenset)
    consent: Consent = field(default_factory=Consent)


class People:
    """The people of one journey, by visitor and by contact."""

    def __init__(self, journey: Journey) -> None:
        self.journey = journey
        contact_of: dict[str, Contact | None] = {}
        for link in journey.links:
            if link.visitor_id not in contact_of or contact_of[link.visitor_id] is None:
                contact_of[link.visitor_id] = _linked_contact(journey, link)
        for touch in journey.touchpoints:
            if touch.visitor_id not in contact_of and isinstance(touch, Touchpoint):
                contact_of[touch.visitor_id] = _crm_click_contact(journey, touch)
        self._contact_of = contact_of
        self._visitors_of: dict[str, set[str]] = {}
        for visitor, contact in contact_of.items():
            if contact is not None:
                self._visitors_of.setdefault(contact.crm_id, set()).add(visitor)

    def of_visitor(self, visitor_id: str) -> Person:
        contact = self._contact_of.get(visitor_id)
        if contact is None:
            return self._person(None, {visitor_id})
        return self.of_contact(contact)

    def of_contact(self, contact: Contact) -> Person:
        return self._person(contact, self._visitors_of.get(contact.crm_id, set()))

    def contacts(self) -> Iterable[Person]:
        """The deal's contacts with hashed identifiers, the primary one first."""
        ordered = sorted(self.journey.deal.contacts, key=lambda c: not c.is_primary)
        return (self.of_contact(c) for c in ordered if c.hashes.any())

    def _person(self, contact: Contact | None, visitors: set[str]) -> Person:
        latest: Touchpoint | None = None
        for touch in self.journey.touchpoints:
            if touch.visitor_id in visitors and _states_consent(touch):
                assert isinstance(touch, Touchpoint)
                if latest is None or touch.occurred_at >= latest.occurred_at:
                    latest = touch
        return Person(contact, frozenset(visitors), latest.consent if latest else Consent())


def _states_consent(touch: Touch) -> bool:
    return isinstance(touch, Touchpoint) and touch.consent.ad_user_data is not None


def _linked_contact(journey: Journey, link: MatchLink) -> Contact | None:
    kind, key = link.key_type, link.key
    for contact in journey.deal.contacts:
        hashes = contact.hashes
        if (
            (kind == "email" and hashes.email == key)
            or (kind == "phone" and hashes.phone == key)
            or (kind == "crm_id" and contact.crm_id == key)
            or (kind in CLICK_KINDS and getattr(contact.click_ids, kind) == key)
        ):
            return contact
    return None


def _crm_click_contact(journey: Journey, touch: Touchpoint) -> Contact | None:
    """The contact whose CRM record carried the click ID of a CRM-click touchpoint."""
    for kind in CLICK_KINDS:
        value = getattr(touch.click_ids, kind)
        if value:
            for contact in journey.deal.contacts:
                if getattr(contact.click_ids, kind) == value:
                    return contact
    return None
