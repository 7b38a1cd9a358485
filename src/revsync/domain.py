"""Frozen domain types that every stage of the loop speaks.

Times are timezone-aware UTC everywhere. Money is ``Decimal`` in the deal's currency.
Raw email and phone never live here: a person is known by the SHA-256 hashes of its
normalised identifiers (see ``revsync.destinations.pii``), one per platform rule set.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from fractions import Fraction
from typing import Any

from pydantic import TypeAdapter


class Channel(StrEnum):
    """GA4 default channel group (the subset a touchpoint can land in)."""

    PAID_SEARCH = "Paid Search"
    PAID_SOCIAL = "Paid Social"
    PAID_SHOPPING = "Paid Shopping"
    PAID_VIDEO = "Paid Video"
    DISPLAY = "Display"
    CROSS_NETWORK = "Cross-network"
    PAID_OTHER = "Paid Other"
    ORGANIC_SEARCH = "Organic Search"
    ORGANIC_SOCIAL = "Organic Social"
    ORGANIC_SHOPPING = "Organic Shopping"
    ORGANIC_VIDEO = "Organic Video"
    EMAIL = "Email"
    AFFILIATES = "Affiliates"
    REFERRAL = "Referral"
    SMS = "SMS"
    AUDIO = "Audio"
    MOBILE_PUSH = "Mobile Push Notifications"
    DIRECT = "Direct"
    UNASSIGNED = "Unassigned"


class DealStatus(StrEnum):
    WON = "won"
    LOST = "lost"
    OPEN = "open"


class ConversionKind(StrEnum):
    """What a planned upload does to the platform's record of a conversion."""

    CONVERSION = "conversion"
    RESTATEMENT = "restatement"
    RETRACTION = "retraction"


class OutcomeStatus(StrEnum):
    """How one row of a batch ended."""

    SENT = "sent"
    ALREADY_SENT = "already_sent"  # the platform already holds it: counts as sent
    REJECTED = "rejected"  # permanent: never retried
    RETRY = "retry"  # transient: retried no earlier than ``retry_after``
    VALIDATED = "validated"  # a dry run (validate_only, test events) passed; nothing stored
    SKIPPED = "skipped"  # revsync decided not to send it (e.g. too old for Meta): no request
    UNKNOWN = "unknown"  # may have been processed (no dedup at the platform): never re-sent


@dataclass(frozen=True, slots=True)
class Consent:
    """Ad consent as the visitor gave it; ``None`` means not stated."""

    ad_user_data: bool | None = None
    ad_personalization: bool | None = None

    @property
    def denies_ads(self) -> bool:
        return self.ad_user_data is False


@dataclass(frozen=True, slots=True)
class ClickIds:
    """Ad click and browser identifiers seen on a landing or written onto a CRM record."""

    gclid: str | None = None
    gbraid: str | None = None
    wbraid: str | None = None
    fbclid: str | None = None
    fbc: str | None = None
    fbp: str | None = None
    ga_client_id: str | None = None
    msclkid: str | None = None
    ttclid: str | None = None
    li_fat_id: str | None = None

    @property
    def google_click(self) -> tuple[str, str] | None:
        """The one Google click identifier to upload: gclid, else gbraid, else wbraid."""
        for name in ("gclid", "gbraid", "wbraid"):
            value = getattr(self, name)
            if value:
                return name, value
        return None

    def any(self) -> bool:
        return any(getattr(self, name) for name in self.__slots__)


@dataclass(frozen=True, slots=True)
class PersonHashes:
    """SHA-256 hex of a person's identifiers, normalised per platform rules.

    ``email``: trimmed, lower-cased (Meta, and the matching key).
    ``email_google``: as ``email``; for gmail.com/googlemail.com the local part loses its
    dots and its ``+`` suffix (Google Ads API, Data Manager API).
    ``phone``: E.164 with leading ``+`` (Google, GA4, and the matching key).
    ``phone_meta``: E.164 digits without ``+`` (Meta).
    ``email_ga4``: as ``email``; for gmail.com/googlemail.com the local part loses its dots
    but keeps a ``+`` suffix (GA4 Measurement Protocol).
    """

    email: str | None = None
    email_google: str | None = None
    phone: str | None = None
    phone_meta: str | None = None
    email_ga4: str | None = None

    def any(self) -> bool:
        return bool(self.email or self.phone)


@dataclass(frozen=True, slots=True)
class Visitor:
    """A first-party cookie identity of one browser."""

    id: str
    first_seen: datetime
    ga_client_id: str | None = None
    fbp: str | None = None


@dataclass(frozen=True, slots=True)
class Touch:
    """What attribution needs of a touchpoint: whose, when, and through which channel."""

    id: str
    visitor_id: str
    occurred_at: datetime
    channel: str  # a ``Channel`` value, or a name from the mapping's channel rules

    @property
    def is_direct(self) -> bool:
        return self.channel in (Channel.DIRECT, Channel.UNASSIGNED)


@dataclass(frozen=True, slots=True)
class Touchpoint(Touch):
    """One landing (session start) of a visitor, with what the ad platforms are sent."""

    source: str | None = None
    medium: str | None = None
    campaign: str | None = None
    term: str | None = None
    content: str | None = None
    landing_url: str | None = None
    referrer: str | None = None
    click_ids: ClickIds = field(default_factory=ClickIds)
    consent: Consent = field(default_factory=Consent)
    user_agent: str | None = None
    ip: str | None = None


@dataclass(frozen=True, slots=True)
class Identity:
    """A link from a visitor to a person (form submit, chat, call, CRM record)."""

    visitor_id: str
    observed_at: datetime
    hashes: PersonHashes = field(default_factory=PersonHashes)
    crm_id: str | None = None
    event: str = "lead"


@dataclass(frozen=True, slots=True)
class Contact:
    """A CRM contact or lead associated with a deal."""

    crm_id: str
    hashes: PersonHashes = field(default_factory=PersonHashes)
    is_primary: bool = False
    click_ids: ClickIds = field(default_factory=ClickIds)


MERGED_FROM = "merged_from"  # a deal field: ";"-separated IDs of deals merged into this one


@dataclass(frozen=True, slots=True)
class Deal:
    """A CRM deal as a source yields it; ``fields[MERGED_FROM]`` names the deals of the same
    source that were merged into it (and no longer exist)."""

    source: str
    id: str
    status: DealStatus
    amount: Decimal | None
    currency: str
    close_at: datetime | None
    modified_at: datetime
    stage: str | None = None
    pipeline: str | None = None
    owner: str | None = None
    contacts: tuple[Contact, ...] = ()
    click_ids: ClickIds = field(default_factory=ClickIds)
    fields: Mapping[str, str] = field(default_factory=dict)
    account_id: str | None = None  # the CRM account / company: a customer, for ARPC and CLTV
    created_at: datetime | None = None
    # (entered_at, stage) the CRM recorded (Salesforce OpportunityHistory, HubSpot
    # hs_v2_date_entered_*), where the source reads it
    stage_history: tuple[tuple[datetime, str], ...] = ()


@dataclass(frozen=True, slots=True)
class MatchLink:
    """Why a visitor belongs to a deal: which key linked them."""

    visitor_id: str
    key_type: str  # email | phone | crm_id | gclid | gbraid | wbraid | fbclid | ga_client_id
    key: str


@dataclass(frozen=True, slots=True)
class Journey:
    """A deal's time-ordered touchpoints inside its lookback window.

    Resolution gives each as a ``Touch``; ``matching.resolve.with_details`` swaps in the
    full ``Touchpoint`` of those a destination sends (the credited ones).
    """

    deal: Deal
    touchpoints: tuple[Touch, ...]
    links: tuple[MatchLink, ...] = ()


def detailed(touch: Touch, deal: Deal) -> Touchpoint:
    """``touch`` of ``deal``'s journey as the full ``Touchpoint`` that
    ``matching.resolve.with_details`` put there."""
    if not isinstance(touch, Touchpoint):
        raise TypeError(
            f"deal {deal.source}/{deal.id}: touchpoint {touch.id} has no details; "
            "use the journeys with_details returns"
        )
    return touch


@dataclass(frozen=True, slots=True)
class Credit:
    """A touchpoint's share of a deal: ``weight`` sums to 1 over the deal, ``amount`` to
    the deal amount to the cent."""

    touchpoint_id: str
    weight: Fraction
    amount: Decimal


@dataclass(frozen=True, slots=True)
class Conversion:
    """One planned upload to one destination, identified by its idempotency key.

    ``key`` becomes Google's ``order_id``, Meta's ``event_id`` and GA4's
    ``transaction_id``; adjustments carry the key of the conversion they change in
    ``original_key``.
    """

    key: str
    destination: str
    platform: str
    kind: ConversionKind
    source: str
    deal_id: str
    action: str
    event_time: datetime
    value: Decimal
    currency: str
    touchpoint_id: str | None = None
    click_ids: ClickIds = field(default_factory=ClickIds)
    person: PersonHashes = field(default_factory=PersonHashes)
    external_id: str | None = None
    consent: Consent = field(default_factory=Consent)
    original_key: str | None = None
    attributes: Mapping[str, str] = field(default_factory=dict)

    def to_json(self) -> bytes:
        return _CONVERSION.dump_json(self)

    @staticmethod
    def from_json(data: str | bytes) -> Conversion:
        return _CONVERSION.validate_json(data)


@dataclass(frozen=True, slots=True)
class UploadOutcome:
    """How the platform answered for one conversion."""

    key: str
    status: OutcomeStatus
    code: str | None = None
    message: str | None = None
    retry_after: datetime | None = None
    request_id: str | None = None  # the platform's ID of the request, to read status later


@dataclass(frozen=True, slots=True)
class AttributionPush:
    """Attribution values to write onto one CRM contact or lead: ``{CRM field: value}``,
    where ``None`` clears the field."""

    crm_id: str
    fields: Mapping[str, str | None]


@dataclass(frozen=True, slots=True)
class PushResult:
    """How the CRM answered for one record of a write-back; ``field`` names the field the
    CRM blamed, if any."""

    crm_id: str
    ok: bool
    code: str | None = None
    message: str | None = None
    field: str | None = None


@dataclass(frozen=True, slots=True)
class Quarantined:
    """A record that could not be used, with the field and reason; the run goes on."""

    kind: str  # deal | contact | touchpoint | identity | conversion | writeback
    record_id: str
    field: str
    reason: str
    source: str = ""
    detail: Mapping[str, Any] = dataclasses.field(default_factory=dict)


_CONVERSION: TypeAdapter[Conversion] = TypeAdapter(Conversion)
