"""Meta Conversions API server events: eligibility and request bodies.

Events older than 7 days are never sent (one would make Meta reject the whole request): a
deal closed before that is skipped when planned, and a row that aged past it before its
send is answered ``skipped`` (``EVENT_TOO_OLD``) without a request: revsync's decision,
not the platform's. The cut-off keeps a margin (``SEND_WINDOW``) for clock skew and the
time retries take.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from revsync.config.destinations import MetaDestination as MetaConfig
from revsync.destinations.base import ApiRequest, PlatformDestination
from revsync.destinations.ownership import is_meta
from revsync.destinations.people import Person
from revsync.destinations.pii import sha256_hex
from revsync.domain import (
    ClickIds,
    Conversion,
    ConversionKind,
    Deal,
    OutcomeStatus,
    Touchpoint,
    UploadOutcome,
)

MAX_EVENTS = 1_000
MAX_AGE = timedelta(days=7)
SEND_WINDOW = MAX_AGE - timedelta(hours=1)
TOO_OLD = "closed more than 7 days ago (less a 1 h margin); Meta accepts no older event"


class MetaDestination(PlatformDestination[MetaConfig]):
    platform = "meta"
    max_batch = MAX_EVENTS
    resend_safe = True  # event_id + event_name deduplicate within 48 h

    browser_ids = True
    identifier_name = "Meta browser ID (_fbc/_fbp) or hashed email/phone"

    def action_for(self, deal: Deal) -> str:
        return self.config.event_name

    def owns(self, touchpoint: Touchpoint) -> bool:
        return is_meta(touchpoint)

    def identifier(self, touchpoint: Touchpoint, deal: Deal) -> ClickIds | None:
        ids = touchpoint.click_ids
        return ClickIds(fbc=ids.fbc, fbp=ids.fbp) if ids.fbc or ids.fbp else None

    @property
    def person_only(self) -> bool:
        return True  # the Conversions API matches on hashed email/phone alone too

    def too_old(self, event_time: datetime, now: datetime) -> str | None:
        return TOO_OLD if now - event_time > SEND_WINDOW else None

    def fill(self, conversion: Conversion, person: Person, deal: Deal) -> Conversion:
        contact = person.contact
        if contact is None:
            return conversion
        return replace(
            conversion,
            person=contact.hashes,
            external_id=sha256_hex(f"{deal.source}:{contact.crm_id}"),
        )

    def adjustment(
        self, original: Conversion, kind: ConversionKind, value: Decimal, now: datetime
    ) -> Conversion | None:
        return None  # the Conversions API has no restatement or retraction

    def send(self, batch: Sequence[Conversion]) -> list[UploadOutcome]:
        now = self.clock()
        fresh = [c for c in batch if now - c.event_time <= SEND_WINDOW]
        outcomes = [
            UploadOutcome(c.key, OutcomeStatus.SKIPPED, "EVENT_TOO_OLD", TOO_OLD)
            for c in batch
            if now - c.event_time > SEND_WINDOW
        ]
        if fresh:
            outcomes.extend(super().send(fresh))
        return outcomes

    def build(self, batch: Sequence[Conversion]) -> list[ApiRequest]:
        endpoint = f"/{self.config.api_version}/{self.config.pixel_id}/events"
        requests = []
        for start in range(0, len(batch), self.batch_size):
            chunk = batch[start : start + self.batch_size]
            body: dict[str, Any] = {"data": [self._event(c) for c in chunk]}
            if self.config.test_event_code:
                body["test_event_code"] = self.config.test_event_code
            requests.append(ApiRequest(endpoint, body, tuple(c.key for c in chunk)))
        return requests

    def _event(self, c: Conversion) -> dict[str, Any]:
        user: dict[str, Any] = {}
        if c.person.email:
            user["em"] = [c.person.email]
        if c.person.phone_meta:
            user["ph"] = [c.person.phone_meta]
        if c.external_id:
            user["external_id"] = [c.external_id]
        if c.click_ids.fbc:
            user["fbc"] = c.click_ids.fbc
        if c.click_ids.fbp:
            user["fbp"] = c.click_ids.fbp
        event: dict[str, Any] = {
            "event_name": c.action,
            "event_time": int(c.event_time.timestamp()),
            "event_id": c.key,
            "action_source": "system_generated",
            "user_data": user,
            "custom_data": {"value": float(c.value), "currency": c.currency},
        }
        if self.config.data_processing_options:
            event["data_processing_options"] = self.config.data_processing_options
            if self.config.data_processing_country is not None:
                event["data_processing_options_country"] = self.config.data_processing_country
            if self.config.data_processing_state is not None:
                event["data_processing_options_state"] = self.config.data_processing_state
        return event
