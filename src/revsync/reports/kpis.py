"""The KPI report: a period's figures beside the period of the same length before it.

Counts: *visits* and *leads* (as the source report counts them), *won deals* (every deal
won in the period, matched to a journey or not), *customers* (the CRM accounts of those
deals, a deal without an account being its own customer) and *new customers* (whose first
won deal ever is in the period). Money, per currency or in the reporting currency:
*revenue* (won deals' amounts), *average deal size* = revenue ÷ won deals, *lead value* =
revenue ÷ leads, *ARPC* = revenue ÷ customers, *CLTV* = the period's customers' revenue
over their whole history ÷ customers, *spend*, *CPL* = spend ÷ leads, *CAC* = spend ÷ new
customers, *ROAS* = revenue ÷ spend, *ROI* = (revenue − spend) ÷ spend. Ratios: visit→lead,
lead→won = won deals ÷ leads.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection

from revsync.attribution.money import minor_units
from revsync.reports.money import Converter
from revsync.reports.sources import Period, per, rate, sources_report
from revsync.store.schema import deals


def previous(period: Period) -> Period:
    """The period of the same length just before ``period`` (which has both ends)."""
    assert period.start and period.end and period.first_day and period.last_day
    length = period.end - period.start
    days = (period.last_day - period.first_day).days + 1
    return Period(
        period.start - length,
        period.start,
        period.first_day - timedelta(days=days),
        period.first_day - timedelta(days=1),
    )


def kpis_report(
    conn: Connection, period: Period, model: str, convert: Converter | None = None
) -> dict[str, Any]:
    """Both periods' KPIs, JSON-ready."""
    before = previous(period)
    return {
        "model": model,
        "currency": convert.currency if convert else None,
        "current": _kpis(conn, period, model, convert),
        "previous": _kpis(conn, before, model, convert),
        "previous_period": [before.first_day.isoformat(), before.last_day.isoformat()],  # type: ignore[union-attr]
        "unconverted": sorted(convert.unconverted) if convert else [],
    }


def _kpis(
    conn: Connection, period: Period, model: str, convert: Converter | None
) -> dict[str, Any]:
    sources = sources_report(conn, "channel", model, period, convert=convert)
    visits, leads = sources.total.visits, sources.total.leads
    d = deals.c
    customer = sa.func.coalesce(d.account_id, "deal:" + d.source + ":" + d.id)
    won = conn.execute(
        sa.select(customer, d.amount, d.currency, d.close_at).where(
            d.status == "won", d.close_at.is_not(None)
        )
    ).all()
    in_period = [w for w in won if _within(period, w.close_at)]
    customers = {w[0] for w in in_period}
    first_won: dict[str, datetime] = {}
    for key, _, _, close_at in won:
        first_won[key] = min(first_won.get(key, close_at), close_at)
    new = sum(1 for key in customers if _within(period, first_won[key]))
    revenue = _sum(in_period, convert)
    lifetime = _sum([w for w in won if w[0] in customers], convert)
    spend = {cur: m.spend for cur, m in sources.total.money.items() if m.spend is not None}
    money = {}
    for cur in sorted(set(revenue) | set(spend)):
        got, cost = revenue.get(cur, Decimal(0)), spend.get(cur)
        money[cur] = {
            "revenue": f"{got:.{minor_units(cur)}f}",
            "average_deal": _str(
                per(got, sum(1 for w in in_period if _cur(w, convert) == cur), cur)
            ),
            "lead_value": _str(per(got, leads, cur)),
            "arpc": _str(per(got, len(customers), cur)),
            "cltv": _str(per(lifetime.get(cur, Decimal(0)), len(customers), cur)),
            **_spent(got, cost, leads, new, cur),
        }
    return {
        "visits": visits,
        "leads": leads,
        "visit_to_lead": _ratio(rate(leads, visits)),
        "won_deals": len(in_period),
        "lead_to_won": _ratio(rate(len(in_period), leads)),
        "customers": len(customers),
        "new_customers": new,
        "currencies": money,
    }


def _spent(got: Decimal, cost: Decimal | None, leads: int, new: int, cur: str) -> dict[str, Any]:
    if cost is None:
        return {"spend": None, "cpl": None, "cac": None, "roas": None, "roi": None}
    return {
        "spend": f"{cost:.{minor_units(cur)}f}",
        "cpl": _str(per(cost, leads, cur)),
        "cac": _str(per(cost, new, cur)),
        "roas": _ratio(rate(Fraction(got), Fraction(cost))),
        "roi": _ratio(rate(Fraction(got - cost), Fraction(cost))),
    }


def _within(period: Period, at: datetime) -> bool:
    return (period.start is None or at >= period.start) and (period.end is None or at < period.end)


def _cur(row: Any, convert: Converter | None) -> str:
    if convert is None or convert.rate(row.currency, row.close_at.date()) is None:
        return str(row.currency)
    return convert.currency


def _sum(rows: list[Any], convert: Converter | None) -> dict[str, Decimal]:
    out: dict[str, Decimal] = {}
    for _, amount, cur, close_at in rows:
        value = Decimal(amount or 0)
        if convert is not None:
            value, cur = convert(value, cur, close_at.date())
        out[cur] = out.get(cur, Decimal(0)) + value
    return out


def _ratio(value: Fraction | None) -> str | None:
    return None if value is None else f"{float(value):.4f}"


def _str(value: Decimal | None) -> str | None:
    return None if value is None else str(value)
