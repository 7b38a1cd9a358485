"""The source report: visits, leads, won deals, attributed revenue and lead value per
channel, source, campaign, ad group, keyword or landing page over a period.

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
- *campaign*, *ad group*, *keyword* of a touchpoint: its ``utm_campaign``, ``utm_content``,
  ``utm_term``, each else the campaign, ad group, keyword Google Ads resolved its gclid to
  (``gclid_clicks``, ``revsync import clicks``). A ``utm_campaign`` that is a spend row's
  campaign ID (ValueTrack ``{campaignid}``) stands for that campaign's name. *landing page*:
  the landing URL without query string and fragment.
- *new customers*: customers (``deals.account_id``, else the deal) whose first won deal
  closes in the period, counted by the model's share of that deal; *CAC* = spend ÷ new
  customers.
- *spend* joins: by campaign, campaign rows on the campaign name; by ad group / keyword,
  keyword rows on the ad group name / keyword text; other groupings: the total only.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, tzinfo
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction
from typing import Any, Literal, get_args

import sqlalchemy as sa
from sqlalchemy import ColumnElement, Connection

from revsync.attribution.money import minor_units
from revsync.domain import Channel
from revsync.reports.money import Converter
from revsync.store.schema import credits, deals, gclid_clicks, identities, spend, touchpoints

GroupBy = Literal["channel", "source", "campaign", "ad_group", "keyword", "landing_page"]
GROUPINGS: tuple[str, ...] = get_args(GroupBy)
NONE = "(none)"
_CLICKED = {"campaign": "campaign", "ad_group": "ad_group", "keyword": "keyword"}
_UTM = {"campaign": "campaign", "ad_group": "content", "keyword": "term"}
_COLUMN = {"channel": "channel", "source": "source", "landing_page": "landing_url"}
_SPEND_KEY = {"campaign": "campaign", "ad_group": "ad_group", "keyword": "keyword"}
_DIRECT = (Channel.DIRECT.value, Channel.UNASSIGNED.value)


@dataclass(frozen=True, slots=True)
class Period:
    """``[start, end)`` in UTC; either end open."""

    start: datetime | None = None
    end: datetime | None = None
    first_day: date | None = None  # the days spend is counted on
    last_day: date | None = None

    @classmethod
    def of_dates(cls, since: date | None, until: date | None, tz: tzinfo) -> Period:
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
    lead_types: dict[str, int] = field(default_factory=dict)  # identities.event -> leads
    customers: Fraction = Fraction(0)  # new customers, by credit share


@dataclass(slots=True)
class SourcesReport:
    by: str
    model: str
    rows: list[SourceRow]
    total: SourceRow
    has_spend: bool = False
    currency: str | None = None  # the reporting currency money was converted into
    unconverted: list[str] = field(default_factory=list)  # currencies without a rate


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
    convert: Converter | None = None,
) -> SourcesReport:
    """The report over ``period`` (default: all time), money only in ``currency`` if given,
    converted into the reporting currency by ``convert`` on each amount's day."""
    period = period or Period()
    dated = convert is not None
    rows: dict[str, SourceRow] = {}
    names = _campaign_names(conn) if by == "campaign" else {}

    def row(key: str | None) -> SourceRow:
        if by == "landing_page" and key:
            key = key.split("#")[0].split("?")[0]
        key = names.get(key, key) if key else key
        key = key if key not in (None, "") else NONE
        return rows.setdefault(key, SourceRow(key))

    group = _key(by)
    visits = (
        sa.select(group, sa.func.count())
        .select_from(_clicked(touchpoints))
        .where(period.where(touchpoints.c.occurred_at))
    )
    for key, count in conn.execute(visits.group_by(group)):
        row(key).visits += count
    for key, event, count in conn.execute(_leads(by, period)):
        r = row(key)
        r.leads += count
        r.lead_types[event] = r.lead_types.get(event, 0) + count
    for key, cur, weight, amount, count, *day in conn.execute(
        _credits(by, model, period, currency, dated)
    ):
        amount, cur = convert(Decimal(amount), cur, day[0].date()) if convert else (amount, cur)
        money = row(key).money.setdefault(cur, Money())
        money.won += Fraction(weight) * count
        money.revenue += Decimal(amount)
    for key, weight, count in conn.execute(_new_customers(by, model, period)):
        row(key).customers += Fraction(weight) * count
    spent = _converted(conn.execute(_spend("total", period, currency, dated)), convert)
    if by in _SPEND_KEY:
        for key, cur, cost in _converted(
            conn.execute(_spend(by, period, currency, dated)), convert
        ):
            money = row(key).money.setdefault(cur, Money())
            money.spend = (money.spend or Decimal(0)) + Decimal(cost)
    total = SourceRow("total")
    for r in rows.values():
        total.visits += r.visits
        total.leads += r.leads
        total.customers += r.customers
        for event, count in r.lead_types.items():
            total.lead_types[event] = total.lead_types.get(event, 0) + count
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

    return SourcesReport(
        by, model, sorted(rows.values(), key=order), total, bool(spent),
        convert.currency if convert else None, sorted(convert.unconverted) if convert else [],
    )  # fmt: skip


def _converted(rows: Iterable[Any], convert: Converter | None) -> list[tuple[str, str, Decimal]]:
    """Spend rows (key, currency, cost[, day]) in the reporting currency where it can be."""
    out = []
    for key, cur, cost, *day in rows:
        amount, cur = convert(Decimal(cost), cur, day[0]) if convert else (Decimal(cost), cur)
        out.append((key, cur, amount))
    return out


def _key(by: GroupBy) -> ColumnElement[Any]:
    """A touchpoint's grouping key: UTM first, else what its resolved gclid says."""
    t = touchpoints.c
    if by in _UTM:
        utm = sa.func.nullif(t[_UTM[by]], "")
        return sa.func.coalesce(utm, gclid_clicks.c[_CLICKED[by]])
    return t[_COLUMN[by]]


def _clicked(source: Any) -> Any:
    """``source`` (touchpoints joined already) with each touchpoint's resolved gclid."""
    return source.outerjoin(gclid_clicks, gclid_clicks.c.gclid == touchpoints.c.gclid)


def _campaign_names(conn: Connection) -> dict[str, str]:
    """Campaign ID -> name from spend rows: a ``{campaignid}`` utm_campaign joins by ID."""
    query = sa.select(spend.c.campaign_id, spend.c.campaign).where(
        spend.c.campaign_id.is_not(None), spend.c.keyword == ""
    )
    return {str(cid): name for cid, name in conn.execute(query.distinct())}


def _leads(by: GroupBy, period: Period) -> sa.Select[Any]:
    """Leads in the period per grouping key of their lead-time touchpoint."""
    i = identities.c
    person = sa.func.coalesce(i.email_sha256, i.phone_sha256, i.crm_id, "v:" + i.visitor_id)
    first = sa.select(
        i.id, i.visitor_id, i.observed_at, i.event,
        sa.func.row_number().over(partition_by=person, order_by=(i.observed_at, i.id)).label("n"),
    ).subquery("first")  # fmt: skip
    leads = (
        sa.select(first.c.id, first.c.visitor_id, first.c.observed_at, first.c.event)
        .where(first.c.n == 1, period.where(first.c.observed_at))
        .subquery("leads")
    )
    t = touchpoints.c
    direct = sa.case((t.channel.in_(_DIRECT), 1), else_=0)
    touch = (
        sa.select(
            leads.c.id.label("lead"),
            leads.c.event,
            _key(by).label("key"),
            sa.func.row_number()
            .over(partition_by=leads.c.id, order_by=(direct, t.occurred_at.desc(), t.id.desc()))
            .label("n"),
        )
        .select_from(
            _clicked(
                leads.outerjoin(
                    touchpoints,
                    sa.and_(
                        t.visitor_id == leads.c.visitor_id, t.occurred_at <= leads.c.observed_at
                    ),
                )
            )
        )
        .subquery("touch")
    )
    return (
        sa.select(touch.c.key, touch.c.event, sa.func.count())
        .where(touch.c.n == 1)
        .group_by(touch.c.key, touch.c.event)
    )


def _credits(
    by: GroupBy, model: str, period: Period, currency: str | None, dated: bool = False
) -> sa.Select[Any]:
    """Credited revenue and deal counts per key, currency and share of deals won in the
    period (and close time when ``dated``); a credit on a touchpoint not in the store (a
    CRM click ID) keeps its channel."""
    c, t = credits.c, touchpoints.c
    key = sa.func.coalesce(t.channel, c.channel) if by == "channel" else _key(by)
    day = [deals.c.close_at] if dated else []
    query = (
        sa.select(key, c.currency, c.weight, sa.func.sum(c.amount), sa.func.count(), *day)
        .select_from(
            _clicked(
                credits.join(
                    deals, sa.and_(deals.c.source == c.source, deals.c.id == c.deal_id)
                ).outerjoin(touchpoints, t.id == c.touchpoint_id)
            )
        )
        .where(c.model == model, deals.c.status == "won", period.where(deals.c.close_at))
        .group_by(key, c.currency, c.weight, *day)
    )
    return query.where(c.currency == currency) if currency else query


def _new_customers(by: GroupBy, model: str, period: Period) -> sa.Select[Any]:
    """Per key and credit share: customers whose first won deal closed in the period."""
    c, t, d = credits.c, touchpoints.c, deals.c
    customer = sa.func.coalesce(d.account_id, d.source + ":" + d.id)
    first = (
        sa.select(
            d.source, d.id, d.close_at,
            sa.func.row_number().over(partition_by=customer, order_by=(d.close_at, d.id))
            .label("n"),
        )
        .where(d.status == "won", d.close_at.is_not(None))
        .subquery("first_won")
    )  # fmt: skip
    key = sa.func.coalesce(t.channel, c.channel) if by == "channel" else _key(by)
    return (
        sa.select(key, c.weight, sa.func.count())
        .select_from(
            _clicked(
                credits.join(
                    first, sa.and_(first.c.source == c.source, first.c.id == c.deal_id)
                ).outerjoin(touchpoints, t.id == c.touchpoint_id)
            )
        )
        .where(c.model == model, first.c.n == 1, period.where(first.c.close_at))
        .group_by(key, c.weight)
    )


def _spend(by: str, period: Period, currency: str | None, dated: bool = False) -> sa.Select[Any]:
    """Cost per key and currency (and day when ``dated``): by campaign from campaign rows
    (on the name), by ad group or keyword from keyword rows; ``total`` from campaign rows
    (keyword rows are a part)."""
    key = spend.c[_SPEND_KEY[by]] if by in _SPEND_KEY else sa.literal("")
    keyword_rows = by in ("ad_group", "keyword")
    day = [spend.c.day] if dated else []
    query = (
        sa.select(key, spend.c.currency, sa.func.sum(spend.c.cost), *day)
        .where(period.days(spend.c.day), (spend.c.keyword != "") if keyword_rows else (
            spend.c.keyword == ""
        ))
        .group_by(key, spend.c.currency, *day)
    )  # fmt: skip
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
            "leads_by_type": dict(sorted(r.lead_types.items())),
            "new_customers": _count(r.customers),
            "currencies": {
                cur: {
                    "won_deals": _count(m.won),
                    "revenue": f"{m.revenue:.{minor_units(cur)}f}",
                    "lead_value": _str(per(m.revenue, r.leads, cur)),
                    "lead_to_won": ratio(rate(m.won, r.leads)),
                    "average_deal": _str(per(m.revenue, m.won, cur)),
                    **(_with_spend(m, r, cur) if report.has_spend else {}),
                }
                for cur, m in sorted(r.money.items())
            },
        }

    return {
        "by": report.by,
        "model": report.model,
        "currency": report.currency,
        "unconverted": report.unconverted,
        "rows": [one(r) for r in report.rows],
        "total": one(report.total),
    }


def _with_spend(m: Money, r: SourceRow, cur: str) -> dict[str, Any]:
    """Spend, CPL = spend ÷ leads, CAC = spend ÷ new customers, ROAS = revenue ÷ spend,
    ROI = (revenue − spend) ÷ spend."""
    if m.spend is None:
        return {"spend": None, "cpl": None, "cac": None, "roas": None, "roi": None}
    places = minor_units(cur)

    def ratio(value: Fraction | None) -> str | None:
        return None if value is None else f"{float(value):.4f}"

    return {
        "spend": f"{m.spend:.{places}f}",
        "cpl": _str(per(m.spend, r.leads, cur)),
        "cac": _str(per(m.spend, r.customers, cur)),
        "roas": ratio(rate(Fraction(m.revenue), Fraction(m.spend))),
        "roi": ratio(rate(Fraction(m.revenue - m.spend), Fraction(m.spend))),
    }


def _count(value: Fraction) -> int | str:
    return int(value) if value.denominator == 1 else str(value)


def _str(value: Decimal | None) -> str | None:
    return None if value is None else str(value)
