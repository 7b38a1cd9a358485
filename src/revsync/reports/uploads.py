"""The upload report: what went where, for the deals won in a period.

Per destination, from the ledger (conversions of deals won in the period):

- *planned*: conversions revsync decided to send (every state but ``skipped``), of which
  *sent* (the platform holds it), *rejected* (by the platform's code) and *pending*
  (``planned``, ``sending``, ``failed``: retried, ``unknown``: awaiting ``ledger settle``);
- *skipped* by revsync's reason (no identifier, consent, too old, ...);
- *match rate* = won deals with a planned conversion ÷ won deals: a deal skipped for no
  identifier, nothing credited to the platform, consent or age, or not planned at all,
  counts against it;
- *revenue uploaded*: the value the platform holds (a sent conversion's, or its latest sent
  restatement's; 0 once a retraction is sent) against the revenue won, per currency or in
  the reporting currency.

And the last runs from ``runs``: when, status, what each destination was sent.
"""

from __future__ import annotations

from collections import Counter
from datetime import date
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection

from revsync.attribution.money import minor_units
from revsync.reports.money import Converter
from revsync.reports.sources import Period
from revsync.store.schema import conversions, deals, runs

PENDING = ("planned", "sending", "failed", "unknown", "validated")


def uploads_report(
    conn: Connection,
    period: Period | None = None,
    destinations: list[str] | None = None,
    convert: Converter | None = None,
    last_runs: int = 10,
) -> dict[str, Any]:
    """The report as JSON-ready data (money as strings)."""
    period = period or Period()
    d, c = deals.c, conversions.c
    won_rows = conn.execute(
        sa.select(d.source, d.id, d.amount, d.currency, d.close_at).where(
            d.status == "won", period.where(d.close_at)
        )
    ).all()
    won_revenue: dict[str, Decimal] = {}
    close_day: dict[tuple[str, str], date] = {}
    for source, deal_id, amount, cur, close_at in won_rows:
        close_day[(source, deal_id)] = close_at.date()
        _add(won_revenue, Decimal(amount or 0), cur, close_at.date(), convert)
    rows = conn.execute(
        sa.select(c.destination, c.platform, c.kind, c.state, c.source, c.deal_id, c.key,
                  c.original_key, c.value, c.currency, c.error_code, c.error_message,
                  c.updated_at)
        .join(deals, sa.and_(d.source == c.source, d.id == c.deal_id))
        .where(d.status == "won", period.where(d.close_at))
        .order_by(c.updated_at, c.key)
    ).all()  # fmt: skip
    names = list(dict.fromkeys([*(destinations or []), *(r.destination for r in rows)]))
    report = [
        _destination(
            name,
            [r for r in rows if r.destination == name],
            close_day,
            len(won_rows),
            won_revenue,
            convert,
        )
        for name in names
    ]
    return {
        "won_deals": len(won_rows),
        "won_revenue": _money(won_revenue),
        "currency": convert.currency if convert else None,
        "unconverted": sorted(convert.unconverted) if convert else [],
        "destinations": report,
        "runs": _runs(conn, last_runs),
    }


def _destination(
    name: str,
    rows: list[Any],
    close_day: dict[tuple[str, str], date],
    won: int,
    won_revenue: dict[str, Decimal],
    convert: Converter | None,
) -> dict[str, Any]:
    conversions_ = [r for r in rows if r.kind == "conversion"]
    states = Counter(r.state for r in conversions_)
    rejected = Counter(r.error_code or "?" for r in conversions_ if r.state == "rejected")
    skipped = Counter(_reason(name, r.error_message) for r in conversions_
                      if r.state == "skipped")  # fmt: skip
    matched = {(r.source, r.deal_id) for r in conversions_ if r.state != "skipped"}
    held: dict[str, tuple[Decimal, str, tuple[str, str]]] = {}  # original key -> value held
    for r in rows:  # oldest first: the latest sent adjustment wins
        if r.state != "sent":
            continue
        deal = (r.source, r.deal_id)
        if r.kind == "conversion":
            held.setdefault(r.key, (Decimal(r.value), r.currency, deal))
        elif r.original_key in held:
            value = Decimal(0) if r.kind == "retraction" else Decimal(r.value)
            held[r.original_key] = (value, r.currency, deal)
    uploaded: dict[str, Decimal] = {}
    for value, cur, deal in held.values():
        _add(uploaded, value, cur, close_day[deal], convert)
    platform = rows[0].platform if rows else None
    return {
        "destination": name,
        "platform": platform,
        "planned": sum(n for state, n in states.items() if state != "skipped"),
        "sent": states.get("sent", 0),
        "rejected": sum(rejected.values()),
        "pending": sum(states.get(state, 0) for state in PENDING),
        "skipped": states.get("skipped", 0),
        "pending_by_state": {s: states[s] for s in PENDING if states.get(s)},
        "rejected_by_code": dict(rejected.most_common()),
        "skipped_by_reason": dict(skipped.most_common()),
        "adjustments_sent": sum(1 for r in rows if r.kind != "conversion" and r.state == "sent"),
        "won_deals": won,
        "matched_deals": len(matched),
        "match_rate": f"{len(matched) / won:.4f}" if won else None,
        "revenue_uploaded": _money(uploaded),
        "revenue_won": _money(won_revenue),
    }


def _reason(destination: str, message: str | None) -> str:
    return (message or "?").removeprefix(f"{destination}: ")


def _add(
    into: dict[str, Decimal], amount: Decimal, cur: str, day: date, convert: Converter | None
) -> None:
    if convert is not None:
        amount, cur = convert(amount, cur, day)
    into[cur] = into.get(cur, Decimal(0)) + amount


def _money(amounts: dict[str, Decimal]) -> dict[str, str]:
    return {cur: f"{v:.{minor_units(cur)}f}" for cur, v in sorted(amounts.items())}


def _runs(conn: Connection, last: int) -> list[dict[str, Any]]:
    query = sa.select(runs).order_by(runs.c.id.desc()).limit(last)
    out = []
    for run in conn.execute(query):
        summary = run.summary or {}
        out.append({
            "id": run.id,
            "started_at": run.started_at.isoformat(),
            "finished_at": run.finished_at.isoformat() if run.finished_at else None,
            "status": run.status,
            "deals_read": sum((summary.get("deals_read") or {}).values()),
            "results": summary.get("results") or {},
        })  # fmt: skip
    return out
