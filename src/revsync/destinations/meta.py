"""Meta Conversions API server events: eligibility and request bodies.

Events older than 7 days are never sent (one would make Meta reject the whole request):
``send`` answers them as rejected with ``EVENT_TOO_OLD`` without a request. The cut-off
keeps a margin (``SEND_WINDOW``) for clock skew and the time retries take.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from revsync.config.mapping import MetaDestination as MetaConfig
from revsync.destinations.base import (
    ApiRequest,
    Plan,
    PlatformDestination,
    credited,
    upload_value,
)
from revsync.destinations.pii import sha256_hex
from revsync.domain import (
    ClickIds,
    Conversion,
    ConversionKind,
    Credit,
    Journey,
    OutcomeStatus,
    PersonHashes,
    UploadOutcome,
)

MAX_EVENTS = 1_000
MAX_AGE = timedelta(days=7)
SEND_WINDOW = MAX_AGE - timedelta(hours=1)


class MetaDestination(PlatformDestination[MetaConfig]):
    platform = "meta"
    max_batch = MAX_EVENTS
    resend_safe = True  # event_id + event_name deduplicate within 48 h

    def plan(self, journey: Journey, credits: Sequence[Credit], now: datetime) -> Plan:
        deal = journey.deal
        assert deal.close_at is not None
        eligible, skipped = credited(journey, credits, self.name, self.require_consent)
        contact = next((c for c in deal.contacts if c.hashes.any()), None)
        conversions = []
        for tp, credit in eligible:
            ids = tp.click_ids
            value = upload_value(deal.amount, credit, self.config.value_mode)
            if not (ids.fbc or ids.fbp) or value <= 0:
                continue
            conversions.append(
                self.conversion(
                    deal,
                    self.config.event_name,
                    value,
                    tp,
                    click_ids=ClickIds(fbc=ids.fbc, fbp=ids.fbp),
                    person=contact.hashes if contact else PersonHashes(),
                    external_id=sha256_hex(f"{deal.source}:{contact.crm_id}") if contact else None,
                )
            )
        return Plan(tuple(conversions), tuple(skipped))

    def adjustment(
        self, original: Conversion, kind: ConversionKind, value: Decimal, now: datetime
    ) -> Conversion | None:
        return None  # the Conversions API has no restatement or retraction

    def send(self, batch: Sequence[Conversion]) -> list[UploadOutcome]:
        now = self.clock()
        fresh = [c for c in batch if now - c.event_time <= SEND_WINDOW]
        outcomes = [
            UploadOutcome(
                c.key,
                OutcomeStatus.REJECTED,
                "EVENT_TOO_OLD",
                "event is older than 7 days (less a 1 h margin); Meta would reject the request",
            )
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
