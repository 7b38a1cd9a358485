"""Google Ads offline click conversions: eligibility, request bodies, adjustments.

Bodies follow ``UploadClickConversionsRequest`` and ``UploadConversionAdjustmentsRequest``
field for field (proto field names), so a transport can hand them to the google-ads
client unchanged and the file transport writes exactly what would be sent.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from revsync.config.destinations import GoogleAdsDestination as GoogleAdsConfig
from revsync.destinations.base import ApiRequest, PlatformDestination, conversion_key
from revsync.destinations.ownership import is_google
from revsync.destinations.people import Person
from revsync.domain import (
    ClickIds,
    Conversion,
    ConversionKind,
    Deal,
    PersonHashes,
    Touchpoint,
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

    identifier_name = "Google click ID inside the click window"

    def action_for(self, deal: Deal) -> str:
        action = self.config.conversion_actions_by_pipeline.get(deal.pipeline or "")
        return action or self.config.conversion_action

    def owns(self, touchpoint: Touchpoint) -> bool:
        return is_google(touchpoint)

    def identifier(self, touchpoint: Touchpoint, deal: Deal) -> ClickIds | None:
        """Exactly one of gclid/gbraid/wbraid, from a click inside the window before close."""
        assert deal.close_at is not None
        click = touchpoint.click_ids.google_click
        window = timedelta(days=self.config.click_window_days)
        if click is None or not timedelta(0) < deal.close_at - touchpoint.occurred_at <= window:
            return None
        return ClickIds(**{click[0]: click[1]})

    @property
    def person_only(self) -> bool:
        return self.config.enhanced_conversions  # enhanced conversions for leads

    def fill(self, conversion: Conversion, person: Person, deal: Deal) -> Conversion:
        hashes = PersonHashes()
        if self.config.enhanced_conversions and person.contact is not None:
            hashes = person.contact.hashes
        return replace(conversion, person=hashes, attributes=self._custom_values(deal))

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
            event_time=self.adjusted_time(original, now),
            value=value,
            currency=original.currency,
            touchpoint_id=original.touchpoint_id,
            consent=original.consent,
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
