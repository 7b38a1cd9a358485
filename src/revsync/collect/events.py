"""What browsers and lead tools send to the collector, and the store rows made from it.

Rows are built by the importer's own ``visit_row`` and ``identity_row``: click IDs,
channel, cookies, IP truncation and PII hashing follow exactly the rules of
``revsync import``.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from revsync.collect.guard import Refused
from revsync.collect.importer import identity_row, touchpoint_row, visit_row
from revsync.config.collector import CollectorConfig
from revsync.config.mapping import RevsyncConfig

VisitorId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._-]{8,128}$")]
SiteKey = Annotated[str, StringConstraints(max_length=64)]
Short = Annotated[str, StringConstraints(max_length=512)]
Url = Annotated[str, StringConstraints(max_length=4096)]
State = Literal["granted", "denied"]
_M = TypeVar("_M", bound=BaseModel)


class _Payload(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Consent(_Payload):
    """Google Consent Mode v2 state of the page."""

    ad_user_data: State | None = None
    ad_personalization: State | None = None
    analytics_storage: State | None = None
    ad_storage: State | None = None


class CollectEvent(_Payload):
    """A session start: the landing page and what the browser knows of the visitor."""

    site: SiteKey
    vid: VisitorId
    sid: VisitorId | None = None
    url: Url
    ref: Url | None = None
    title: Short | None = None
    ga: Short | None = None
    fbp: Short | None = None
    fbc: Short | None = None
    consent: Consent = Field(default_factory=Consent)


class IdentifyEvent(_Payload):
    """A visitor who became a lead on the page (form, call, chat)."""

    site: SiteKey
    vid: VisitorId
    sid: VisitorId | None = None
    email: Short | None = None
    phone: Short | None = None
    crmId: Short | None = None
    event: Literal["form", "call", "chat"] = "form"
    consent: Consent = Field(default_factory=Consent)


class LeadEvent(_Payload):
    """A server-side lead (call tracking, chat, form backend), signed by the sender."""

    site: SiteKey
    event: Literal["form", "call", "chat"]
    vid: VisitorId | None = None
    gclid: Short | None = None
    gbraid: Short | None = None
    wbraid: Short | None = None
    fbclid: Short | None = None
    msclkid: Short | None = None
    email: Short | None = None
    phone: Short | None = None
    crm_id: Short | None = None
    occurred_at: datetime | None = None


def parse(model: type[_M], body: bytes) -> _M:
    """``body`` as a ``model``; refused 400 when it is not JSON, 422 naming the field."""
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        error = exc.errors(include_input=False, include_url=False)[0]
        if error["type"] == "json_invalid":
            raise Refused(400, "invalid") from None
        raise Refused(422, "invalid", ".".join(str(p) for p in error["loc"]) or None) from None


def _text(value: str | None) -> str | None:
    """As the importer reads a text field: stripped, None when empty."""
    return (value.strip() or None) if value else None


def _flag(value: State | None) -> bool | None:
    return None if value is None else value == "granted"


def consent_allows(mode: str, consent: Consent) -> bool:
    """Whether a site in ``mode`` may store anything for a page in ``consent``."""
    if consent.analytics_storage == "denied":
        return False
    return mode != "required" or consent.analytics_storage == "granted"


class RowMaker:
    """Turns validated payloads into store rows under one mapping."""

    def __init__(self, mapping: RevsyncConfig, collector: CollectorConfig) -> None:
        self.rules = mapping.channels
        self.privacy = mapping.privacy
        self.region = mapping.matching.default_phone_region
        self.raw_pii = collector.store_raw_pii

    def touchpoint(
        self, event: CollectEvent, now: datetime, user_agent: str | None, ip: str | None
    ) -> dict[str, Any]:
        """The importer's rules on the event (``visit_row``); raises ``RowError`` naming the
        field the store would refuse."""
        fields = {
            "landing_url": _text(event.url),
            "referrer": _text(event.ref),
            "_ga": _text(event.ga),
            "_fbp": _text(event.fbp),
            "_fbc": _text(event.fbc),
            "user_agent": _text(user_agent[:1000] if user_agent else None),
            "ip": _text(ip),
        }
        flags = {
            "consent_ad_user_data": _flag(event.consent.ad_user_data),
            "consent_ad_personalization": _flag(event.consent.ad_personalization),
        }
        occurred = now.astimezone(UTC)
        return visit_row(event.vid, occurred, fields.get, flags.get, self.rules, self.privacy)

    def identity(
        self,
        vid: str,
        now: datetime,
        event: str,
        email: str | None,
        phone: str | None,
        crm_id: str | None,
    ) -> dict[str, Any]:
        """Hashed email/phone (raw values only with ``store_raw_pii``); raises ``RowError``."""
        row = identity_row(
            {
                "visitor_id": vid,
                "observed_at": now.isoformat(),
                "email": email,
                "phone": phone,
                "crm_id": crm_id,
                "event": event,
            },
            self.region,
        )
        if self.raw_pii:
            row["email"] = email.strip()[:320] if email else None
            row["phone"] = phone.strip()[:64] if phone else None
        return row

    def lead(self, lead: LeadEvent, now: datetime) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """A lead's touchpoints (its click, when it names one and no visitor) and identity."""
        at = lead.occurred_at or now
        if at.tzinfo is None or at > now:
            at = now
        clicks = {
            name: value
            for name in ("gclid", "gbraid", "wbraid", "fbclid", "msclkid")
            if (value := getattr(lead, name))
        }
        touchpoints: list[dict[str, Any]] = []
        vid = lead.vid
        if vid is None:
            basis = "|".join(f"{k}={v}" for k, v in sorted(clicks.items()))
            if not basis:  # no visitor and no click: the person alone
                basis = f"{lead.email or ''}|{lead.phone or ''}|{lead.crm_id or ''}"
            vid = "lead-" + hashlib.sha256(basis.encode()).hexdigest()[:40]
            if clicks:
                touchpoints.append(
                    touchpoint_row(
                        {"visitor_id": vid, "occurred_at": at.isoformat(), **clicks},
                        self.rules,
                        self.privacy,
                    )
                )
        identity = self.identity(vid, at, lead.event, lead.email, lead.phone, lead.crm_id)
        return touchpoints, identity
