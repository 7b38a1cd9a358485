"""GA4 Measurement Protocol events: eligibility and request bodies.

One request per client_id with at most 25 events. ``timestamp_micros`` is set only inside
the 72-hour backdating limit; older events are recorded at receipt time.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from revsync.config.mapping import Ga4Destination as Ga4Config
from revsync.destinations.base import (
    ApiRequest,
    Plan,
    PlatformDestination,
    Transport,
    conversion_key,
    credited,
    upload_value,
)
from revsync.domain import ClickIds, Conversion, ConversionKind, Credit, Journey, PersonHashes

MAX_EVENTS = 25
BACKDATE_LIMIT = timedelta(hours=71)  # GA4 allows 72 h; 1 h margin for skew and retries


class Ga4Destination(PlatformDestination):
    platform = "ga4"
    max_batch = 500  # rows per send; split into requests of <= 25 events per client_id
    resend_safe = False  # GA4 does not deduplicate: an interrupted send is held as unknown

    def __init__(
        self,
        config: Ga4Config,
        model: str,
        transport: Transport,
        require_consent: bool = True,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        super().__init__(config.name, model, transport, config.batch_size, clock)
        self.config = config
        self.require_consent = require_consent

    def plan(self, journey: Journey, credits: Sequence[Credit], now: datetime) -> Plan:
        deal = journey.deal
        assert deal.close_at is not None
        eligible, skipped = credited(journey, credits, self.name, self.require_consent)
        person = next((c.hashes for c in deal.contacts if c.hashes.any()), None)
        conversions = []
        for tp, credit in eligible:
            client_id = tp.click_ids.ga_client_id
            value = upload_value(deal.amount, credit, self.config.value_mode)
            if not client_id or value <= 0:
                continue
            key = conversion_key(self.name, self.config.event_name, deal.source, deal.id, tp.id)
            conversions.append(
                Conversion(
                    key=key,
                    destination=self.name,
                    platform=self.platform,
                    kind=ConversionKind.CONVERSION,
                    source=deal.source,
                    deal_id=deal.id,
                    action=self.config.event_name,
                    event_time=deal.close_at,
                    value=value,
                    currency=deal.currency,
                    touchpoint_id=tp.id,
                    click_ids=ClickIds(ga_client_id=client_id),
                    consent=tp.consent,
                    person=person or PersonHashes(),
                )
            )
        return Plan(tuple(conversions), tuple(skipped))

    def adjustment(
        self, original: Conversion, kind: ConversionKind, value: Decimal, now: datetime
    ) -> Conversion | None:
        if kind is not ConversionKind.RETRACTION:
            return None  # GA4 has no restatement
        return Conversion(
            key=conversion_key(original.key, kind),
            destination=self.name,
            platform=self.platform,
            kind=kind,
            source=original.source,
            deal_id=original.deal_id,
            action="refund",
            event_time=now,
            value=original.value,
            currency=original.currency,
            touchpoint_id=original.touchpoint_id,
            click_ids=original.click_ids,
            consent=original.consent,
            original_key=original.key,
        )

    def build(self, batch: Sequence[Conversion]) -> list[ApiRequest]:
        by_client: dict[str, list[Conversion]] = {}
        for c in batch:
            by_client.setdefault(c.click_ids.ga_client_id or "", []).append(c)
        endpoint = "/debug/mp/collect" if self.config.validate_only else "/mp/collect"
        now = self.clock()
        requests = []
        for client_id, rows in by_client.items():
            for start in range(0, len(rows), MAX_EVENTS):
                chunk = rows[start : start + MAX_EVENTS]
                requests.append(
                    ApiRequest(
                        endpoint=f"{endpoint}?measurement_id={self.config.measurement_id}",
                        body=self._body(client_id, chunk, now),
                        keys=tuple(c.key for c in chunk),
                    )
                )
        return requests

    def _body(self, client_id: str, rows: Sequence[Conversion], now: datetime) -> dict[str, Any]:
        first = rows[0]
        body: dict[str, Any] = {"client_id": client_id}
        newest = max(c.event_time for c in rows)
        oldest = min(c.event_time for c in rows)
        if now - oldest <= BACKDATE_LIMIT and newest <= now:
            body["timestamp_micros"] = int(oldest.timestamp() * 1_000_000)
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
        if first.person.email_google:
            user_data["sha256_email_address"] = [first.person.email_google]
        if first.person.phone:
            user_data["sha256_phone_number"] = [first.person.phone]
        if user_data:
            body["user_data"] = user_data
        body["events"] = [
            {
                "name": c.action,
                "params": {
                    "transaction_id": c.original_key or c.key,
                    "value": float(c.value),
                    "currency": c.currency,
                },
            }
            for c in rows
        ]
        return body
