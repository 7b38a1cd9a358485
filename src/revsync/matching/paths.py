"""Every visitor's channel path, converting or not: the input of the data-driven model."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

from sqlalchemy import Connection, select

from revsync.domain import DealStatus
from revsync.matching.resolve import sqlite_time
from revsync.store.schema import deals, match_links

# Raw driver rows, read 10,000 at a time (PostgreSQL: through a server-side cursor), so a
# window of millions of touchpoints streams in bounded memory without a Row object each.
_PATHS = (
    "SELECT visitor_id, channel FROM touchpoints WHERE occurred_at >= {p} "
    "ORDER BY visitor_id, occurred_at, id"
)
_BATCH = 10_000


def visitor_paths(conn: Connection, since: datetime) -> Iterator[tuple[list[str], bool]]:
    """``(channels in time order, converted)`` per visitor with touchpoints since ``since``;
    converted means linked to a won deal. Streams: memory is one batch of rows."""
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
    raw = conn.connection.dbapi_connection
    assert raw is not None
    if conn.dialect.name == "postgresql":
        cursor = raw.cursor(name="revsync_visitor_paths")
        cursor.execute(_PATHS.format(p="%s"), (since,))
    else:
        cursor = raw.cursor()
        cursor.execute(_PATHS.format(p="?"), (sqlite_time(since),))
    try:
        visitor: str | None = None
        path: list[str] = []
        while rows := cursor.fetchmany(_BATCH):
            for visitor_id, channel in rows:
                if visitor_id != visitor:
                    if visitor is not None:
                        yield path, visitor in converted
                    visitor, path = visitor_id, []
                path.append(channel)
        if visitor is not None:
            yield path, visitor in converted
    finally:
        cursor.close()
