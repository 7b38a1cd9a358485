"""``revsync import spend`` (daily ad spend) and ``revsync import rates`` (daily exchange
rates: ``date, base, quote, rate``).

Spend columns: ``date, platform, account, campaign, cost, currency, clicks, impressions`` and,
optionally, ``campaign_id, ad_group, keyword`` (a keyword row: both named). A row is keyed
by platform, account, date, campaign, ad group and keyword; importing a day again replaces
its figures (platforms restate recent spend)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from revsync.collect.importer import ImportReport, _import
from revsync.currencies import ISO_4217
from revsync.rows import RowError, date_or_timestamp, decimal, shown, text
from revsync.store.queries import upsert
from revsync.store.schema import exchange_rates, spend

_FIGURES = ("campaign_id", "cost", "currency", "clicks", "impressions", "updated_at")


def spend_row(row: dict[str, Any], now: datetime) -> dict[str, Any]:
    day = date_or_timestamp(row, "date")
    if day is None:
        raise RowError("date", "is required")
    if isinstance(day, datetime):
        raise RowError("date", "must be a day (YYYY-MM-DD), the platform's reporting day")
    cost = decimal(row, "cost")
    if cost is None or cost < 0:
        raise RowError("cost", "is required and must not be negative")
    currency = (text(row, "currency", required=True) or "").upper()
    if currency not in ISO_4217:
        raise RowError("currency", f"{shown(currency)} is not an ISO 4217 currency code")
    stored: dict[str, Any] = {
        "platform": _short(row, "platform", 20).lower(),
        "account": _short(row, "account", 64),
        "day": day,
        "campaign": _short(row, "campaign", 255),
        "ad_group": _optional(row, "ad_group", 255),
        "keyword": _optional(row, "keyword", 255),
        "campaign_id": _optional(row, "campaign_id", 64) or None,
        "cost": cost,
        "currency": currency,
        "updated_at": now,
    }
    for name in ("clicks", "impressions"):
        count = decimal(row, name)
        if count is not None and (count < 0 or count != count.to_integral_value()):
            raise RowError(name, f"{count} is not a whole number of at least 0")
        stored[name] = None if count is None else int(count)
    if bool(stored["ad_group"]) != bool(stored["keyword"]):
        raise RowError("keyword", "a keyword row names both ad_group and keyword")
    return stored


def _optional(row: dict[str, Any], name: str, limit: int) -> str:
    value = text(row, name) or ""
    if len(value) > limit:
        raise RowError(name, f"is longer than {limit} characters")
    return value


def _short(row: dict[str, Any], name: str, limit: int) -> str:
    value = text(row, name, required=True) or ""
    if len(value) > limit:
        raise RowError(name, f"is longer than {limit} characters")
    return value


def import_spend(
    engine: Engine, path: Path, rejects: Path | None = None, now: datetime | None = None
) -> ImportReport:
    moment = now or datetime.now(UTC)
    return _import(
        engine, path, rejects, lambda row: spend_row(row, moment), _store_spend, (spend,)
    )


def _store_spend(conn: Any, rows: list[dict[str, Any]]) -> None:
    upsert(conn, spend, rows, update=_FIGURES)


def rate_row(row: dict[str, Any]) -> dict[str, Any]:
    """An exchange-rate row: ``date, base, quote, rate`` (1 base = rate quote)."""
    day = date_or_timestamp(row, "date")
    if day is None or isinstance(day, datetime):
        raise RowError("date", "is required: a day (YYYY-MM-DD)")
    codes = {}
    for name in ("base", "quote"):
        code = (text(row, name, required=True) or "").upper()
        if code not in ISO_4217:
            raise RowError(name, f"{shown(code)} is not an ISO 4217 currency code")
        codes[name] = code
    if codes["base"] == codes["quote"]:
        raise RowError("quote", "is the base currency itself")
    rate = decimal(row, "rate")
    if rate is None or not rate.is_finite() or rate <= 0:
        raise RowError("rate", "is required and must be a positive number")
    return {"day": day, **codes, "rate": rate}


def import_rates(engine: Engine, path: Path, rejects: Path | None = None) -> ImportReport:
    """Daily exchange rates; a (day, base, quote) imported again takes the new rate."""
    return _import(engine, path, rejects, rate_row, _store_rates, (exchange_rates,))


def _store_rates(conn: Any, rows: list[dict[str, Any]]) -> None:
    upsert(conn, exchange_rates, rows, update=("rate",))
