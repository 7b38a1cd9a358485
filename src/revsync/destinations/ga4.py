"""GA4 Measurement Protocol events: eligibility and request bodies.

One request per client_id with at most 25 events. GA4 is the cross-channel view: every
touchpoint is its own, so its credited value is the whole amount. ``timestamp_micros`` is
set only inside the 72-hour backdating limit; older events are booked at receipt time, and
each run counts them (``notes``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from revsync.config.destinations import Ga4Destination as Ga4Config
from revsync.destinations.base import ApiRequest, Plan, PlatformDestination, conversion_key
from revsync.destinations.people import Person
from revsync.domain import (
    ClickIds,
    Conversion,
    ConversionKind,
    Credit,
    Deal,
    Journey,
    PersonHashes,
    Touchpoint,
)

MAX_EVENTS = 25
BACKDATE_LIMIT = timedelta(hours=71)  # GA4 allows 72 h; 1 h margin for skew and retries
BOOKED_AT_SEND = "closed more than 72 h before the send; GA4 books it at send time"


class Ga4Destination(PlatformDestination[Ga4Config]):
    platform = "ga4"
    max_batch = 500  # rows per send; split into requests of <= 25 events per client_id
    resend_safe = False  # GA4 does not deduplicate: an interrupted send is held as unknown

    browser_ids = True
    identifier_name = "GA4 client_id"

    def action_for(self, deal: Deal) -> str:
        return self.config.event_name

    def identifier(self, touchpoint: Touchpoint, deal: Deal) -> ClickIds | None:
        client_id = touchpoint.click_ids.ga_client_id
        return ClickIds(ga_client_id=client_id) if client_id else None

    def fill(self, conversion: Conversion, person: Person, deal: Deal) -> Conversion:
        hashes = person.contact.hashes if person.contact else PersonHashes()
        return replace(conversion, person=hashes)

    def plan(self, journey: Journey, credits: Sequence[Credit], now: datetime) -> Plan:
        plan = super().plan(journey, credits, now)
        if any(now - c.event_time > BACKDATE_LIMIT for c in plan.conversions):
            return replace(plan, notes=(f"{self.name}: {BOOKED_AT_SEND}",))
        return plan

    def adjustment(
        self, original: Conversion, kind: ConversionKind, value: Decimal, now: datetime
    ) -> Conversion | None:
        if kind is not ConversionKind.RETRACTION or original.action != "purchase":
            return None  # GA4 has no restatement, and only a purchase has a refund
        return replace(
            original,
            key=conversion_key(original.key, kind),
            kind=kind,
            action="refund",
            event_time=self.adjusted_time(original, now),
            original_key=original.key,
        )

    def build(self, batch: Sequence[Conversion]) -> list[ApiRequest]:
        """One request per (client_id, person, consent), at most 25 events each: user_data
        and consent are request-level in the Measurement Protocol, so rows of different
        people or consent never share a request."""
        groups: dict[str, list[Conversion]] = {}
        for c in batch:
            groups.setdefault(request_group(c), []).append(c)
        endpoint = "/debug/mp/collect" if self.config.validate_only else "/mp/collect"
        now = self.clock()
        requests = []
        for rows in groups.values():
            for start in range(0, len(rows), MAX_EVENTS):
                chunk = rows[start : start + MAX_EVENTS]
                requests.append(
                    ApiRequest(
                        endpoint=f"{endpoint}?measurement_id={self.config.measurement_id}",
                        body=self._body(chunk, now),
                        keys=tuple(c.key for c in chunk),
                    )
                )
        return requests

    def _body(self, rows: Sequence[Conversion], now: datetime) -> dict[str, Any]:
        first = rows[0]
        body: dict[str, Any] = {"client_id": first.click_ids.ga_client_id or ""}
        if first.consent.ad_user_data is not None or first.consent.ad_personalization is not None:
            body["consent"] = {
                name: "GRANTED" if value else "DENIED"
                for name, value in (
                    ("ad_user_data", first.consent.ad_user_data),
                    ("ad_personalization", first.consent.ad_personalization),
                )
                if value is not None
            }
        user_data: dict[str, list[str]] = {}
        if email := _email(first.person):
            user_data["sha256_email_address"] = [email]
        if first.person.phone:
            user_data["sha256_phone_number"] = [first.person.phone]
        if user_data:
            body["user_data"] = user_data
        body["events"] = [self._event(c, now) for c in rows]
        return body

    @staticmethod
    def _event(c: Conversion, now: datetime) -> dict[str, Any]:
        event: dict[str, Any] = {
            "name": c.action,
            "params": {
                "transaction_id": c.original_key or c.key,
                "value": float(c.value),
                "currency": c.currency,
            },
        }
        # Older than the backdating limit: recorded at receipt time rather than dropped.
        if timedelta(0) <= now - c.event_time <= BACKDATE_LIMIT:
            event["timestamp_micros"] = int(c.event_time.timestamp() * 1_000_000)
        return event


def request_group(c: Conversion) -> str:
    """Rows with the same value may share a request: client_id, user_data and consent are
    request-level in the Measurement Protocol (32 hex characters, no PII inside)."""
    consent = c.consent
    parts = (c.click_ids.ga_client_id or "", _email(c.person) or "", c.person.phone or "",
             str(consent.ad_user_data), str(consent.ad_personalization))  # fmt: skip
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:32]


def _email(person: PersonHashes) -> str | None:
    """GA4's hash of the email (gmail dots removed, a +suffix kept). A contact stored before
    revsync kept it has only ``email_google``, made then by that same rule."""
    return person.email_ga4 or person.email_google
