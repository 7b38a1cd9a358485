"""Google Ads offline click conversions: eligibility, request bodies, adjustments.

Bodies follow ``UploadClickConversionsRequest`` and ``UploadConversionAdjustmentsRequest``
field for field (proto field names), so a transport can hand them to the google-ads
client unchanged and the file transport writes exactly what would be sent.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from revsync.config.mapping import GoogleAdsDestination as GoogleAdsConfig
from revsync.destinations.base import (
    ApiRequest,
    Plan,
    PlatformDestination,
    conversion_key,
    credited,
    upload_value,
)
from revsync.domain import (
    ClickIds,
    Conversion,
    ConversionKind,
    Credit,
    Deal,
    Journey,
    PersonHashes,
    Quarantined,
)

MAX_IDENTIFIERS = 5


def google_datetime(value: datetime, timezone: str) -> str:
    """``yyyy-mm-dd hh:mm:ss+hh:mm`` in the account's time zone."""
    local = value.astimezone(ZoneInfo(timezone))
    offset = local.strftime("%z")
    return local.strftime("%Y-%m-%d %H:%M:%S") + f"{offset[:3]}:{offset[3:]}"


class GoogleAdsDestination(PlatformDestination[GoogleAdsConfig]):
    platform = "google_ads"
    max_batch = 2_000
    resend_safe = True  # order_id is unique per conversion action

    def action_for(self, pipeline: str | None) -> str:
        action = self.config.conversion_actions_by_pipeline.get(pipeline or "")
        return action or self.config.conversion_action

    def plan(self, journey: Journey, credits: Sequence[Credit], now: datetime) -> Plan:
        deal = journey.deal
        assert deal.close_at is not None
        action = self.action_for(deal.pipeline)
        window = timedelta(days=self.config.click_window_days)
        eligible, skipped = credited(journey, credits, self.name, self.require_consent)
        conversions: list[Conversion] = []
        for tp, credit in eligible:
            click = tp.click_ids.google_click
            if click is None:
                continue
            if tp.occurred_at >= deal.close_at or deal.close_at - tp.occurred_at > window:
                skipped.append(
                    Quarantined(
                        "conversion",
                        deal.id,
                        click[0],
                        f"{self.name}: click is not within {window.days} days before the close",
                        deal.source,
                        {"touchpoint": tp.id},
                    )
                )
                continue
            value = upload_value(deal.amount, credit, self.config.value_mode)
            if value <= 0:
                continue
            conversions.append(
                self.conversion(
                    deal,
                    action,
                    value,
                    tp,
                    click_ids=ClickIds(**{click[0]: click[1]}),
                    attributes=self._custom_values(deal),
                )
            )
        if not conversions and self.config.enhanced_conversions and deal.amount:
            person = _first_person(journey)
            if person is not None:
                conversions.append(
                    self.conversion(
                        deal,
                        action,
                        deal.amount,
                        person=person,
                        attributes=self._custom_values(deal),
                    )
                )
        return Plan(tuple(conversions), tuple(skipped))

    def _custom_values(self, deal: Deal) -> dict[str, str]:
        """The deal's values for the mapped conversion custom variables (by variable ID)."""
        known = {"pipeline": deal.pipeline, "stage": deal.stage, "owner": deal.owner}
        values = {}
        for variable, attribute in self.config.custom_variables.items():
            value = known[attribute] if attribute in known else deal.fields.get(attribute)
            if value:
                values[variable] = str(value)
        return values

    def adjustment(
        self, original: Conversion, kind: ConversionKind, value: Decimal, now: datetime
    ) -> Conversion | None:
        return Conversion(
            key=conversion_key(original.key, kind, str(value)),
            destination=self.name,
            platform=self.platform,
            kind=kind,
            source=original.source,
            deal_id=original.deal_id,
            action=original.action,
            event_time=now,
            value=value,
            currency=original.currency,
            touchpoint_id=original.touchpoint_id,
            original_key=original.key,
        )

    def build(self, batch: Sequence[Conversion]) -> list[ApiRequest]:
        requests: list[ApiRequest] = []
        clicks = [c for c in batch if c.kind is ConversionKind.CONVERSION]
        adjustments = [c for c in batch if c.kind is not ConversionKind.CONVERSION]
        if clicks:
            requests.append(
                self._request(
                    "ConversionUploadService/UploadClickConversions",
                    "conversions",
                    clicks,
                    [self._click(c) for c in clicks],
                )
            )
        if adjustments:
            requests.append(
                self._request(
                    "ConversionAdjustmentUploadService/UploadConversionAdjustments",
                    "conversion_adjustments",
                    adjustments,
                    [self._adjustment(c) for c in adjustments],
                )
            )
        return requests

    def _request(
        self,
        endpoint: str,
        rows_field: str,
        batch: Sequence[Conversion],
        rows: list[dict[str, Any]],
    ) -> ApiRequest:
        body = {
            "customer_id": self.config.customer_id,
            rows_field: rows,
            "partial_failure": True,
            "validate_only": self.config.validate_only,
        }
        return ApiRequest(endpoint=endpoint, body=body, keys=tuple(c.key for c in batch))

    def _action_resource(self, action: str) -> str:
        return f"customers/{self.config.customer_id}/conversionActions/{action}"

    def _click(self, c: Conversion) -> dict[str, Any]:
        tz = self.config.account_timezone
        row: dict[str, Any] = {
            "conversion_action": self._action_resource(c.action),
            "conversion_date_time": google_datetime(c.event_time, tz),
            "conversion_value": float(c.value),
            "currency_code": c.currency,
            "order_id": c.key,
        }
        click = c.click_ids.google_click
        if click is not None:
            row[click[0]] = click[1]
        if c.consent.ad_user_data is not None:
            granted = "GRANTED" if c.consent.ad_user_data else "DENIED"
            row["consent"] = {"ad_user_data": granted}
        identifiers = [{"hashed_email": h} for h in (c.person.email_google,) if h]
        identifiers += [{"hashed_phone_number": h} for h in (c.person.phone,) if h]
        if identifiers:
            row["user_identifiers"] = identifiers[:MAX_IDENTIFIERS]
        if c.attributes:
            customer = self.config.customer_id
            row["custom_variables"] = [
                {
                    "conversion_custom_variable": (
                        f"customers/{customer}/conversionCustomVariables/{variable}"
                    ),
                    "value": value,
                }
                for variable, value in sorted(c.attributes.items())
            ]
        return row

    def _adjustment(self, c: Conversion) -> dict[str, Any]:
        tz = self.config.account_timezone
        row: dict[str, Any] = {
            "conversion_action": self._action_resource(c.action),
            "adjustment_type": c.kind.upper(),
            "adjustment_date_time": google_datetime(c.event_time, tz),
            "order_id": c.original_key,
        }
        if c.kind is ConversionKind.RESTATEMENT:
            row["restatement_value"] = {
                "adjusted_value": float(c.value),
                "currency_code": c.currency,
            }
        return row


def _first_person(journey: Journey) -> PersonHashes | None:
    for contact in journey.deal.contacts:
        if contact.hashes.any():
            return contact.hashes
    return None
