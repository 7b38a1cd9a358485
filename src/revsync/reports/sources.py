"""The source report: visits, leads, won deals, attributed revenue and lead value per
channel, source, campaign or keyword over a period.

Definitions (README, "Reports"):

- *visit*: a touchpoint (a landing) in the period.
- *lead*: a person's first identity event (form, call, chat, import), counted in the
  period it falls in. A person is the email hash, else the phone hash, else the CRM ID,
  else the visitor. Its source is the *lead-time touchpoint*: the visitor's last
  non-direct touch at or before the event (the last touch if all were direct).
- *won deals* and *revenue*: the model's credits on deals won in the period, grouped by
  the credited touchpoint; a deal split across sources counts by its share (0.5 each).
- *lead value* = revenue ÷ leads; *visit→lead* = leads ÷ visits; *lead→won* = won deals
  ÷ leads; *average deal size* = revenue ÷ won deals. Money is per currency, never summed
  across currencies.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction
from typing import Any, Literal, get_args

import sqlalchemy as sa
from sqlalchemy import ColumnElement, Connection

from revsync.attribution.money import minor_units
from revsync.domain import Channel
from revsync.store.schema import credits, deals, identities, spend, touchpoints

GroupBy = Literal["channel", "source", "campaign", "keyword"]
GROUPINGS: tuple[str, ...] = get_args(GroupBy)
NONE = "(none)"
_COLUMN = {"channel": "channel", "source": "source", "campaign": "campaign", "keyword": "term"}
_DIRECT = (Channel.DIRECT.value, Channel.UNASSIGNED.value)


@dataclass(frozen=True, slots=True)
class Period:
    """``[start, end)`` in UTC; either end open."""

    start: datetime | None = None
    end: datetime | None = None
    first_day: date | None = None  # the days spend is counted on
    last_day: date | None = None

    @classmethod
    def of_dates(cls, since: date | None, until: date | None, tz: timezone) -> Period:
        """Whole days ``since``..``until`` (both included) in the time zone ``tz``."""
        start = datetime.combine(since, time(), tz) if since else None
        end = datetime.combine(until + timedelta(days=1), time(), tz) if until else None
        return cls(start, end, since, until)

    def where(self, column: Any) -> ColumnElement[bool]:
        clauses = [sa.true()]
        if self.start is not None:
            clauses.append(column >= self.start)
        if self.end is not None:
            clauses.append(column < self.end)
        return sa.and_(*clauses)

    def days(self, column: Any) -> ColumnElement[bool]:
        clauses = [sa.true()]
        if self.first_day is not None:
            clauses.append(column >= self.first_day)
        if self.last_day is not None:
            clauses.append(column <= self.last_day)
        return sa.and_(*clauses)


@dataclass(slots=True)
class Money:
    """One currency's won deals (by credit share) and attributed revenue."""

    won: Fraction = Fraction(0)
    revenue: Decimal = Decimal(0)
    spend: Decimal | None = None


@dataclass(slots=True)
class SourceRow:
    key: str
    visits: int = 0
    leads: int = 0
    money: dict[str, Money] = field(default_factory=dict)


@dataclass(slots=True)
class SourcesReport:
    by: str
    model: str
    rows: list[SourceRow]
    total: SourceRow
    has_spend: bool = False


def rate(part: Fraction | int, whole: int | Fraction) -> Fraction | None:
    return Fraction(part) / Fraction(whole) if whole else None


def per(amount: Decimal, count: Fraction | int, currency: str) -> Decimal | None:
    """``amount ÷ count`` in the currency's minor units, half up (85,000 / 60 = 1,416.67)."""
    if not count:
        return None
    exact = Fraction(amount) / Fraction(count)
    quantum = Decimal(1).scaleb(-minor_units(currency))
    value = Decimal(exact.numerator) / Decimal(exact.denominator)
    return value.quantize(quantum, rounding=ROUND_HALF_UP)


def sources_report(
    conn: Connection,
    by: GroupBy = "channel",
    model: str = "last_non_direct",
    period: Period | None = None,
    currency: str | None = None,
) -> SourcesReport:
    """The report over ``period`` (default: all time), money only in ``currency`` if given."""
    period = period or Period()
    rows: dict[str, SourceRow] = {}

    def row(key: str | None) -> SourceRow:
        key = key if key not in (None, "") else NONE
        return rows.setdefault(key, SourceRow(key))

    group = touchpoints.c[_COLUMN[by]]
    visits = sa.select(group, sa.func.count()).where(period.where(touchpoints.c.occurred_at))
    for key, count in conn.execute(visits.group_by(group)):
        row(key).visits += count
    for key, count in conn.execute(_leads(by, period)):
        row(key).leads += count
    for key, cur, weight, amount, count in conn.execute(_credits(by, model, period, currency)):
        money = row(key).money.setdefault(cur, Money())
        money.won += Fraction(weight) * count
        money.revenue += Decimal(amount)
    spent = conn.execute(_spend(by, period, currency)).all()
    for key, cur, cost in spent:
        money = (row(key) if by == "campaign" else SourceRow("")).money.setdefault(cur, Money())
        money.spend = (money.spend or Decimal(0)) + Decimal(cost)
    total = SourceRow("total")
    for r in rows.values():
        total.visits += r.visits
        total.leads += r.leads
        for cur, m in r.money.items():
            t = total.money.setdefault(cur, Money())
            t.won += m.won
            t.revenue += m.revenue
    for _, cur, cost in spent:
        t = total.money.setdefault(cur, Money())
        t.spend = (t.spend or Decimal(0)) + Decimal(cost)
    only = next(iter(total.money)) if len(total.money) == 1 else None

    def order(r: SourceRow) -> tuple[Decimal, int, int, str]:
        """By revenue when there is one currency (never compared across two), then leads."""
        revenue = r.money[only].revenue if only in r.money else Decimal(0)
        return (-revenue, -r.leads, -r.visits, r.key)

    return SourcesReport(by, model, sorted(rows.values(), key=order), total, bool(spent))


def _leads(by: GroupBy, period: Period) -> sa.Select[Any]:
    """Leads in the period per grouping key of their lead-time touchpoint."""
    i = identities.c
    person = sa.func.coalesce(i.email_sha256, i.phone_sha256, i.crm_id, "v:" + i.visitor_id)
    first = sa.select(
        i.id, i.visitor_id, i.observed_at,
        sa.func.row_number().over(partition_by=person, order_by=(i.observed_at, i.id)).label("n"),
    ).subquery("first")  # fmt: skip
    leads = (
        sa.select(first.c.id, first.c.visitor_id, first.c.observed_at)
        .where(first.c.n == 1, period.where(first.c.observed_at))
        .subquery("leads")
    )
    t = touchpoints.c
    direct = sa.case((t.channel.in_(_DIRECT), 1), else_=0)
    touch = (
        sa.select(
            leads.c.id.label("lead"),
            t[_COLUMN[by]].label("key"),
            sa.func.row_number()
            .over(partition_by=leads.c.id, order_by=(direct, t.occurred_at.desc(), t.id.desc()))
            .label("n"),
        )
        .select_from(
            leads.outerjoin(
                touchpoints,
                sa.and_(t.visitor_id == leads.c.visitor_id, t.occurred_at <= leads.c.observed_at),
            )
        )
        .subquery("touch")
    )
    return sa.select(touch.c.key, sa.func.count()).where(touch.c.n == 1).group_by(touch.c.key)


def _credits(by: GroupBy, model: str, period: Period, currency: str | None) -> sa.Select[Any]:
    """Credited revenue and deal counts per key, currency and share of deals won in the
    period; a credit on a touchpoint not in the store (a CRM click ID) keeps its channel."""
    c, t = credits.c, touchpoints.c
    key = sa.func.coalesce(t.channel, c.channel) if by == "channel" else t[_COLUMN[by]]
    query = (
        sa.select(key, c.currency, c.weight, sa.func.sum(c.amount), sa.func.count())
        .select_from(
            credits.join(
                deals, sa.and_(deals.c.source == c.source, deals.c.id == c.deal_id)
            ).outerjoin(touchpoints, t.id == c.touchpoint_id)
        )
        .where(c.model == model, deals.c.status == "won", period.where(deals.c.close_at))
        .group_by(key, c.currency, c.weight)
    )
    return query.where(c.currency == currency) if currency else query


def _spend(by: GroupBy, period: Period, currency: str | None) -> sa.Select[Any]:
    """Cost per campaign (by campaign) or in all (other groupings) and currency, from
    campaign rows (keyword rows are a part of them)."""
    key = spend.c.campaign if by == "campaign" else sa.literal("")
    query = (
        sa.select(key, spend.c.currency, sa.func.sum(spend.c.cost))
        .where(period.days(spend.c.day), spend.c.keyword == "")
        .group_by(key, spend.c.currency)
    )
    return query.where(spend.c.currency == currency) if currency else query


def as_dict(report: SourcesReport) -> dict[str, Any]:
    """JSON-ready: money and ratios as strings (ratios to 4 decimals)."""

    def ratio(value: Fraction | None) -> str | None:
        return None if value is None else f"{float(value):.4f}"

    def one(r: SourceRow) -> dict[str, Any]:
        return {
            report.by: r.key,
            "visits": r.visits,
            "leads": r.leads,
            "visit_to_lead": ratio(rate(r.leads, r.visits)),
            "currencies": {
                cur: {
                    "won_deals": str(m.won) if m.won.denominator != 1 else int(m.won),
                    "revenue": f"{m.revenue:.{minor_units(cur)}f}",
                    "lead_value": _str(per(m.revenue, r.leads, cur)),
                    "lead_to_won": ratio(rate(m.won, r.leads)),
                    "average_deal": _str(per(m.revenue, m.won, cur)),
                    **(_with_spend(m, r.leads, cur) if report.has_spend else {}),
                }
                for cur, m in sorted(r.money.items())
            },
        }

    return {
        "by": report.by,
        "model": report.model,
        "rows": [one(r) for r in report.rows],
        "total": one(report.total),
    }


def _with_spend(m: Money, leads: int, cur: str) -> dict[str, Any]:
    """Spend, CPL = spend ÷ leads, ROAS = revenue ÷ spend, ROI = (revenue − spend) ÷ spend."""
    if m.spend is None:
        return {"spend": None, "cpl": None, "roas": None, "roi": None}
    places = minor_units(cur)

    def ratio(value: Fraction | None) -> str | None:
        return None if value is None else f"{float(value):.4f}"

    return {
        "spend": f"{m.spend:.{places}f}",
        "cpl": _str(per(m.spend, leads, cur)),
        "roas": ratio(rate(Fraction(m.revenue), Fraction(m.spend))),
        "roi": ratio(rate(Fraction(m.revenue - m.spend), Fraction(m.spend))),
    }


def _str(value: Decimal | None) -> str | None:
    return None if value is None else str(value)
