"""Planning one page of won and lost deals into the ledger, per destination.

Each destination plans one conversion per deal (``Destination.plan``); this module turns
those plans into ledger rows: new conversions, restatements of sent ones whose value
changed, retractions of deals no longer won, and ``skipped`` rows with revsync's reason
for what it decided not to send. A deal already uploaded under the per-touchpoint keys of
revsync before 0.2 is recognised and never uploaded again under its new key.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import Decimal

from sqlalchemy import Connection

from revsync.destinations.base import Destination, Plan
from revsync.domain import MERGED_FROM, Conversion, ConversionKind, Credit, Deal, Journey
from revsync.sync import ledger
from revsync.sync.ledger import State
from revsync.sync.summary import RunSummary

EARLIER_KEYS = "uploaded before under per-touchpoint keys; not uploaded again"
MERGED = "uploaded before as a deal since merged into this one; not uploaded again"


def _merged_from(deal: Deal) -> list[str]:
    return [i for i in deal.fields.get(MERGED_FROM, "").split(";") if i and i != deal.id]


def plan_destination(
    conn: Connection,
    destination: Destination,
    journeys: Sequence[Journey],
    credits: Mapping[tuple[str, str], Sequence[Credit]],
    not_won: Sequence[Deal],
    now: datetime,
    summary: RunSummary,
) -> list[Conversion]:
    """The conversions and adjustments ``destination`` gets for this page; skips are written
    to the ledger and counted in ``summary``."""
    merged = {j.deal.id: _merged_from(j.deal) for j in journeys}
    wanted = [(d.source, d.id) for d in [*(j.deal for j in journeys), *not_won]]
    wanted += [(j.deal.source, m) for j in journeys for m in merged[j.deal.id]]
    existing = _ledger_of(conn, wanted, destination.name)
    planned: list[Conversion] = []
    skipped: list[tuple[Conversion, str, str]] = []
    for journey in journeys:
        key = (journey.deal.source, journey.deal.id)
        plan = destination.plan(journey, credits[key], now)
        for note in plan.notes:
            summary.notes[note] += 1
        rows = existing.get(key, []) + [
            row for m in merged[journey.deal.id] for row in existing.get((key[0], m), [])
        ]
        for item in plan.skipped:
            reason = item.reason.split(": ", 1)[-1]
            summary.skipped[f"{destination.name}: {reason}"] += 1
            skipped.append((_placeholder(destination, journey.deal, plan), item.field, reason))
        planned += _changes(destination, journey.deal.id, plan, rows, now, summary)
    for deal in not_won:
        planned += _retractions(destination, existing.get((deal.source, deal.id), []), now, summary)
    ledger.add_skipped(conn, skipped, summary.run_id, now)
    return planned


def _ledger_of(
    conn: Connection, deals: Sequence[tuple[str, str]], destination: str
) -> dict[tuple[str, str], list[dict[str, object]]]:
    """The ledger rows at ``destination`` of these ``(source, deal id)``s."""
    by_source: dict[str, list[str]] = defaultdict(list)
    for source, deal_id in deals:
        by_source[source].append(deal_id)
    out: dict[tuple[str, str], list[dict[str, object]]] = {}
    for source, ids in by_source.items():
        for (deal_id, dest), rows in ledger.deal_ledger(conn, source, ids).items():
            if dest == destination:
                out[(source, deal_id)] = rows
    return out


def _placeholder(destination: Destination, deal: Deal, plan: Plan) -> Conversion:
    """The ledger row of a skipped deal: its key at this destination, nothing to send."""
    assert deal.close_at is not None
    return Conversion(
        key=plan.key,
        destination=destination.name,
        platform=destination.platform,
        kind=ConversionKind.CONVERSION,
        source=deal.source,
        deal_id=deal.id,
        action="",
        event_time=deal.close_at,
        value=Decimal(0),
        currency=deal.currency,
    )


def _changes(
    destination: Destination,
    deal_id: str,
    plan: Plan,
    rows: Sequence[dict[str, object]],
    now: datetime,
    summary: RunSummary,
) -> list[Conversion]:
    """New conversions, and restatements of sent ones whose value changed."""
    current = ledger.effective_values(rows)
    not_sent = (State.REJECTED, State.SKIPPED)
    earlier = {
        str(r["key"]) for r in rows
        if r["kind"] == ConversionKind.CONVERSION and r["state"] not in not_sent
    }  # fmt: skip
    # the live (not retracted) uploads of deals since merged into this one
    merged = {str(r["key"]) for r in rows if str(r["deal_id"]) != deal_id} & {
        key for key, (_, retracted) in current.items() if not retracted
    }
    out = []
    for conversion in plan.conversions:
        known = current.get(conversion.key)
        if known is None and earlier & merged:
            summary.skipped[f"{destination.name}: {MERGED}"] += 1
        elif known is None and earlier - {conversion.key}:
            summary.skipped[f"{destination.name}: {EARLIER_KEYS}"] += 1
        elif known is None:
            out.append(conversion)
        elif not known[1] and known[0] != conversion.value:
            adj = destination.adjustment(
                conversion, ConversionKind.RESTATEMENT, conversion.value, now
            )
            if adj is None:
                summary.skipped[f"{destination.name}: amount changed; platform cannot restate"] += 1
            else:
                out.append(adj)
    return out


def _retractions(
    destination: Destination,
    rows: Sequence[dict[str, object]],
    now: datetime,
    summary: RunSummary,
) -> list[Conversion]:
    """Retractions of the sent conversions of a deal that is no longer won."""
    out = []
    payloads = {str(r["key"]): r for r in rows}
    for original_key, (value, retracted) in ledger.effective_values(rows).items():
        original = payloads[original_key]
        if retracted or original["state"] != State.SENT:
            continue
        adj = destination.adjustment(
            Conversion.from_json(str(original["payload"])), ConversionKind.RETRACTION, value, now
        )
        if adj is None:
            summary.skipped[f"{destination.name}: deal lost; platform cannot retract"] += 1
        else:
            out.append(adj)
    return out
