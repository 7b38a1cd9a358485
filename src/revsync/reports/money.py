"""Money in one reporting currency, never silently mixed.

An amount of day D in currency X becomes ``reports.currency`` at the rate of the latest
imported day on or before D (``exchange_rates``: X→reporting, or the inverse pair), else
at the mapping's fallback rate (``reports.rates``). An amount with no rate at all is not
converted: it stays in its own currency, on its own line, and the report names the
currency (``unconverted``)."""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy import Connection

from revsync.config.reports import ReportsConfig
from revsync.store.schema import exchange_rates


@dataclass
class Converter:
    """Converts amounts into ``currency``; records the currencies it could not convert."""

    currency: str
    fallback: dict[str, Decimal]
    days: dict[str, list[date]] = field(default_factory=dict)  # per currency, sorted
    rates: dict[str, list[Decimal]] = field(default_factory=dict)  # 1 X = rate reporting
    unconverted: set[str] = field(default_factory=set)

    @classmethod
    def load(cls, conn: Connection, config: ReportsConfig) -> Converter | None:
        """The mapping's converter (all imported rates of the reporting currency), or
        ``None`` when no reporting currency is set."""
        if config.currency is None:
            return None
        converter = cls(config.currency, dict(config.rates))
        r = exchange_rates.c
        series: dict[str, dict[date, Decimal]] = {}
        query = sa.select(r.day, r.base, r.quote, r.rate).where(
            sa.or_(r.base == config.currency, r.quote == config.currency)
        )
        # a direct pair (X -> reporting) wins over the inverse on the same day
        for day, base, quote, rate in sorted(
            conn.execute(query), key=lambda row: row[2] != config.currency
        ):
            other, value = (base, Decimal(rate)) if quote == config.currency else (
                quote, 1 / Decimal(rate))  # fmt: skip
            series.setdefault(other, {}).setdefault(day, value)
        for other, by_day in series.items():
            ordered = sorted(by_day)
            converter.days[other] = ordered
            converter.rates[other] = [by_day[d] for d in ordered]
        return converter

    def rate(self, currency: str, day: date) -> Decimal | None:
        if currency == self.currency:
            return Decimal(1)
        days = self.days.get(currency, [])
        at = bisect.bisect_right(days, day)
        if at:
            return self.rates[currency][at - 1]
        return self.fallback.get(currency)

    def __call__(self, amount: Decimal, currency: str, day: date) -> tuple[Decimal, str]:
        """``amount`` in the reporting currency, or as it was (and noted) without a rate."""
        rate = self.rate(currency, day)
        if rate is None:
            self.unconverted.add(currency)
            return amount, currency
        return amount * rate, self.currency
