"""``revsync import spend``: daily ad spend from a CSV or JSONL export.

Columns: ``date, platform, account, campaign, cost, currency, clicks, impressions`` and,
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
from revsync.store.schema import spend

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
