"""The ``reports:`` block of ``revsync.yaml``: the reporting currency, its exchange rates,
the time zone whose days the reports' periods are made of, and what every sync reads from
the ad platforms for the reports (spend, gclid clicks)."""

from __future__ import annotations

from decimal import Decimal
from typing import Literal

from pydantic import Field, field_validator

from revsync.config.rules import Block, TimeZoneName
from revsync.currencies import ISO_4217


def _currency(value: str) -> str:
    code = value.strip().upper()
    if code not in ISO_4217:
        raise ValueError(f"{value!r} is not an ISO 4217 currency code")
    return code


class ReportsConfig(Block):
    currency: str | None = Field(
        None,
        description="Reporting currency (ISO 4217): money in other currencies is converted "
        "with `revsync import rates` or `rates`; without it, figures stay per currency.",
    )
    timezone: TimeZoneName = Field(
        "UTC", description="IANA time zone whose whole days --from/--to name."
    )
    rates: dict[str, Decimal] = Field(
        default_factory=dict,
        description="Fallback rates: {EUR: 1.08} is 1 EUR = 1.08 of the reporting currency; "
        "an imported daily rate wins.",
    )
    spend_from: list[Literal["google_ads", "meta"]] = Field(
        default_factory=list,
        description="Ad platforms whose daily spend every sync reads, as `revsync import "
        "spend --from` does, at most every read_every_hours: a worker keeps spend current "
        "without a job of its own.",
    )
    resolve_clicks: bool = Field(
        False,
        description="Every sync resolves new gclids to campaign, ad group and keyword, as "
        "`revsync import clicks` does, at most every read_every_hours.",
    )
    read_every_hours: int = Field(
        6, ge=1, le=168, description="Hours between two syncs' reads of spend and clicks."
    )

    @field_validator("currency")
    @classmethod
    def _reporting(cls, value: str | None) -> str | None:
        return None if value is None else _currency(value)

    @field_validator("spend_from")
    @classmethod
    def _platforms(cls, value: list[str]) -> list[str]:
        return list(dict.fromkeys(value))

    @field_validator("rates")
    @classmethod
    def _rates(cls, value: dict[str, Decimal]) -> dict[str, Decimal]:
        out = {}
        for code, rate in value.items():
            if not rate.is_finite() or rate <= 0:
                raise ValueError(f"{code}: a rate is a positive number, not {rate}")
            out[_currency(code)] = rate
        return out
