"""Every visitor's channel path, converting or not: the input of the data-driven model."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

from sqlalchemy import Connection, select

from revsync.domain import DealStatus
from revsync.store.schema import deals, match_links, touchpoints


def visitor_paths(conn: Connection, since: datetime) -> Iterator[tuple[list[str], bool]]:
    """``(channels in time order, converted)`` per visitor with touchpoints since ``since``;
    converted means linked to a won deal. Streams: memory is one path at a time."""
    converted = set(
        conn.execute(
            select(match_links.c.visitor_id)
            .join(
                deals,
                (deals.c.source == match_links.c.source) & (deals.c.id == match_links.c.deal_id),
            )
            .where(deals.c.status == DealStatus.WON.value)
        ).scalars()
    )
    rows = conn.execution_options(yield_per=10_000).execute(
        select(touchpoints.c.visitor_id, touchpoints.c.channel)
        .where(touchpoints.c.occurred_at >= since)
        .order_by(touchpoints.c.visitor_id, touchpoints.c.occurred_at, touchpoints.c.id)
    )
    visitor: str | None = None
    path: list[str] = []
    for visitor_id, channel in rows:
        if visitor_id != visitor:
            if visitor is not None:
                yield path, visitor in converted
            visitor, path = visitor_id, []
        path.append(channel)
    if visitor is not None:
        yield path, visitor in converted
