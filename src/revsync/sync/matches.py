"""What a page's matching and attribution leave in the store: the match links and the
credits of every model, replaced per deal (a deal read again is matched afresh)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from sqlalchemy import Connection, delete

from revsync.domain import Credit, Deal, Journey
from revsync.store import queries
from revsync.store.schema import credits, match_links


def by_source(page: Sequence[Deal]) -> dict[str, list[str]]:
    """Deal IDs per source."""
    out: dict[str, list[str]] = defaultdict(list)
    for deal in page:
        out[deal.source].append(deal.id)
    return out


def store_links(conn: Connection, journeys: Sequence[Journey]) -> None:
    for source, ids in by_source([j.deal for j in journeys]).items():
        links = match_links.c
        conn.execute(delete(match_links).where(links.source == source, links.deal_id.in_(ids)))
    rows = [
        {
            "source": j.deal.source,
            "deal_id": j.deal.id,
            "visitor_id": m.visitor_id,
            "key_type": m.key_type,
            "key": m.key,
        }
        for j in journeys
        for m in j.links
    ]
    queries.upsert(conn, match_links, rows)


def store_credits(
    conn: Connection,
    journeys: Sequence[Journey],
    credited: dict[str, dict[tuple[str, str], tuple[Credit, ...]]],
) -> None:
    for source, ids in by_source([j.deal for j in journeys]).items():
        conn.execute(delete(credits).where(credits.c.source == source, credits.c.deal_id.in_(ids)))
    rows = []
    for journey in journeys:
        channel_of = {tp.id: tp.channel for tp in journey.touchpoints}
        key = (journey.deal.source, journey.deal.id)
        for model, by_deal in credited.items():
            for credit in by_deal[key]:
                rows.append(
                    {
                        "source": key[0],
                        "deal_id": key[1],
                        "model": model,
                        "touchpoint_id": credit.touchpoint_id,
                        "weight": str(credit.weight),
                        "amount": credit.amount,
                        "currency": journey.deal.currency,
                        "channel": channel_of[credit.touchpoint_id],
                    }
                )
    queries.upsert(conn, credits, rows)
