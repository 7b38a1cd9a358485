"""The pipeline (opportunity) report: deals by stage and source, stage-to-stage conversion
and days in stage, from the deals and their stage history (``deal_stages``).

- *Deals*: those created in the period (the CRM's creation time, else the first stage
  entry revsync knows of); all of them without a period.
- *Source* of a deal: the model's credited touchpoints by their share (won deals with a
  journey), else the lead source of its primary contact (the person's first identity
  event's lead-time touchpoint, as in the source report), else ``(unknown)``.
- *Stage history*: a deal's stage entries in time order; an entry of the stage the deal is
  already in (the sync seeing a stage the CRM's history holds) is not a move and is dropped.
- *Stage order*: the stages deals close in (won or lost) after the others; within each,
  by the mean position at which deals enter them (a deal's stages in entry order: 0, 1,
  2, ...), then by name.
- *Stage → next*: of the deals that entered a stage, the share that later entered any
  stage after it in that order.
- *Median days in stage*: from entering a stage to entering the next one, over the deals
  that left it (a deal still in a stage is not counted: its time there is not over).
- *Amounts*: in ``reports.currency`` at the rate of the deal's close date (an open deal's
  expected one; without a close date, its creation), see ``reports.money``; an amount
  without a rate stays in its own currency and the report names it (``unconverted``).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from fractions import Fraction
from statistics import median
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy import Connection

from revsync.attribution.money import minor_units
from revsync.reports.money import Converter
from revsync.reports.sources import Period
from revsync.store.schema import (
    contacts,
    credits,
    deal_contacts,
    deal_stages,
    deals,
    identities,
    touchpoints,
)

PipelineBy = Literal["channel", "source", "campaign"]
UNKNOWN = "(unknown)"
_DIRECT = ("Direct", "Unassigned")
_CHUNK = 5_000


@dataclass
class _Deal:
    key: tuple[str, str]
    stage: str
    status: str
    amount: Decimal
    currency: str
    entries: list[tuple[datetime, str]] = field(default_factory=list)
    sources: dict[str, Fraction] = field(default_factory=dict)


def pipeline_report(
    conn: Connection, by: PipelineBy = "channel", model: str = "last_non_direct",
    period: Period | None = None, convert: Converter | None = None,
) -> dict[str, Any]:  # fmt: skip
    """The report as JSON-ready data; amounts converted by ``convert`` where it can."""
    period = period or Period()
    found = _deals(conn, period, convert)
    _attribute(conn, found, by, model)
    order = _stage_order(found)
    return {
        "by": by,
        "model": model,
        "stages": [_stage(stage, n, found, order) for n, stage in enumerate(order)],
        "rows": _rows(found, order),
        "total": {"deals": len(found), **_counts(list(found.values()))},
        "currency": convert.currency if convert else None,
        "unconverted": sorted(convert.unconverted) if convert else [],
    }


def _deals(
    conn: Connection, period: Period, convert: Converter | None
) -> dict[tuple[str, str], _Deal]:
    d, s = deals.c, deal_stages.c
    history: dict[tuple[str, str], list[tuple[datetime, str]]] = defaultdict(list)
    for source, deal_id, at, stage in conn.execute(
        sa.select(s.source, s.deal_id, s.entered_at, s.stage)
    ):
        history[(source, deal_id)].append((at, stage))
    found = {}
    for source, deal_id, stage, status, amount, cur, created, modified, close in conn.execute(
        sa.select(
            d.source, d.id, d.stage, d.status, d.amount, d.currency, d.created_at, d.modified_at,
            d.close_at,
        )
    ):  # fmt: skip
        key = (source, deal_id)
        entries = _moves(sorted(history.get(key, [])))
        if not entries and stage:
            entries = [(modified, stage)]
        born = created or (entries[0][0] if entries else modified)
        if (period.start and born < period.start) or (period.end and born >= period.end):
            continue
        value = Decimal(amount or 0)
        if convert is not None:
            value, cur = convert(value, cur, (close or born).date())
        found[key] = _Deal(key, stage or UNKNOWN, status, value, cur, entries)
    return found


def _attribute(conn: Connection, found: dict[tuple[str, str], _Deal], by: str, model: str) -> None:
    """Each deal's sources: its credits by share, else its primary contact's lead source."""
    c, t = credits.c, touchpoints.c
    column = t[by] if by != "channel" else sa.func.coalesce(t.channel, c.channel)
    query = (
        sa.select(c.source, c.deal_id, c.weight, column)
        .select_from(credits.outerjoin(touchpoints, t.id == c.touchpoint_id))
        .where(c.model == model)
    )
    for source, deal_id, weight, value in conn.execute(query):
        deal = found.get((source, deal_id))
        if deal is not None:
            name = value or UNKNOWN
            deal.sources[name] = deal.sources.get(name, Fraction(0)) + Fraction(weight)
    rest = [d for d in found.values() if not d.sources]
    leads = _lead_sources(conn, [d.key for d in rest], by)
    for deal in rest:
        deal.sources = {leads.get(deal.key) or UNKNOWN: Fraction(1)}


def _lead_sources(
    conn: Connection, keys: list[tuple[str, str]], by: str
) -> dict[tuple[str, str], str]:
    """Deal -> the ``by`` value of its primary contact's lead-time touchpoint."""
    dc, ct, i, t = deal_contacts.c, contacts.c, identities.c, touchpoints.c
    person_of: dict[tuple[str, str], str] = {}
    for start in range(0, len(keys), _CHUNK):
        ids = [deal_id for _, deal_id in keys[start : start + _CHUNK]]
        query = (
            sa.select(dc.source, dc.deal_id, sa.func.coalesce(ct.email_sha256, ct.phone_sha256))
            .join(contacts, sa.and_(ct.source == dc.source, ct.crm_id == dc.contact_id))
            .where(dc.deal_id.in_(ids), dc.is_primary.is_(True))
        )
        for source, deal_id, person in conn.execute(query):
            if person:
                person_of[(source, deal_id)] = person
    first: dict[str, tuple[datetime, str]] = {}  # person -> (first event, visitor)
    people = sorted(set(person_of.values()))
    for start in range(0, len(people), _CHUNK):
        chunk = people[start : start + _CHUNK]
        query = sa.select(sa.func.coalesce(i.email_sha256, i.phone_sha256), i.observed_at,
                          i.visitor_id).where(
            sa.or_(i.email_sha256.in_(chunk), i.phone_sha256.in_(chunk)))  # fmt: skip
        for person, at, visitor in conn.execute(query):
            if person not in first or (at, visitor) < first[person]:
                first[person] = (at, visitor)
    visitors = sorted({v for _, v in first.values()})
    touches: dict[str, list[tuple[datetime, bool, str | None]]] = defaultdict(list)
    column = t[by]
    for start in range(0, len(visitors), _CHUNK):
        query = sa.select(t.visitor_id, t.occurred_at, t.channel, column).where(
            t.visitor_id.in_(visitors[start : start + _CHUNK])
        )
        for row in conn.execute(query):
            touches[row[0]].append((row[1], row[2] not in _DIRECT, row[3]))
    out = {}
    for key, person in person_of.items():
        if person not in first:
            continue
        at, visitor = first[person]
        before = sorted(x for x in touches.get(visitor, []) if x[0] <= at)
        paid = [x for x in before if x[1]] or before
        if paid:
            out[key] = paid[-1][2] or UNKNOWN
    return out


def _moves(entries: list[tuple[datetime, str]]) -> list[tuple[datetime, str]]:
    """The entries that change the stage: a repeat of the current stage is dropped."""
    return [e for n, e in enumerate(entries) if n == 0 or e[1] != entries[n - 1][1]]


def _stage_order(found: dict[tuple[str, str], _Deal]) -> list[str]:
    """Closing stages last; within each group by mean entry position, then name."""
    positions: dict[str, list[int]] = defaultdict(list)
    closing: set[str] = set()
    for deal in found.values():
        for n, (_, stage) in enumerate(deal.entries):
            positions[stage].append(n)
        positions.setdefault(deal.stage, [])
        if deal.status != "open":
            closing.add(deal.stage)
    return sorted(positions, key=lambda s: (
        s in closing, sum(positions[s]) / len(positions[s]) if positions[s] else float("inf"),
        s))  # fmt: skip


def _stage(
    stage: str, index: int, found: dict[tuple[str, str], _Deal], order: list[str]
) -> dict[str, Any]:
    later = set(order[index + 1 :])
    entered = [d for d in found.values() if any(s == stage for _, s in d.entries)]
    moved_on = [d for d in entered if any(
        s in later and at >= _entered(d, stage) for at, s in d.entries)]  # fmt: skip
    days = []
    for deal in entered:
        for (at, s), (after, _) in zip(deal.entries, deal.entries[1:], strict=False):
            if s == stage:
                days.append((after - at).total_seconds() / 86_400)
    current = [d for d in found.values() if d.stage == stage]
    return {
        "stage": stage,
        "deals": len(current),
        **_counts(current),
        "entered": len(entered),
        "to_next": f"{len(moved_on) / len(entered):.4f}" if entered and later else None,
        "median_days": round(median(days), 1) if days else None,
    }


def _entered(deal: _Deal, stage: str) -> datetime:
    return min(at for at, s in deal.entries if s == stage)


def _counts(group: list[_Deal]) -> dict[str, Any]:
    amounts: dict[str, Decimal] = {}
    for deal in group:
        amounts[deal.currency] = amounts.get(deal.currency, Decimal(0)) + deal.amount
    return {
        "open": sum(1 for d in group if d.status == "open"),
        "won": sum(1 for d in group if d.status == "won"),
        "lost": sum(1 for d in group if d.status == "lost"),
        "amount": {cur: f"{v:.{minor_units(cur)}f}" for cur, v in sorted(amounts.items())},
    }


def _rows(found: dict[tuple[str, str], _Deal], order: list[str]) -> list[dict[str, Any]]:
    """Stage x source: deals by share and their amount by share, per currency."""
    cells: dict[tuple[str, str], tuple[Fraction, dict[str, Decimal]]] = {}
    for deal in found.values():
        for name, share in deal.sources.items():
            count, money = cells.get((deal.stage, name), (Fraction(0), {}))
            amount = deal.amount * Decimal(share.numerator) / Decimal(share.denominator)
            money[deal.currency] = money.get(deal.currency, Decimal(0)) + amount
            cells[(deal.stage, name)] = (count + share, money)
    rank = {stage: n for n, stage in enumerate(order)}
    return [
        {"stage": stage, "source": name,
         "deals": int(count) if count.denominator == 1 else str(count),
         "amount": {cur: f"{v:.{minor_units(cur)}f}" for cur, v in sorted(money.items())}}
        for (stage, name), (count, money) in sorted(
            cells.items(), key=lambda item: (rank[item[0][0]], -item[1][0], item[0][1]))
    ]  # fmt: skip
