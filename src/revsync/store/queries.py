"""Small, dialect-aware writes and reads shared by every stage."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import Connection, Executable, Table, insert, select
from sqlalchemy.dialects import postgresql, sqlite

from revsync.domain import Quarantined
from revsync.store.schema import quarantine, sync_state

# Rows per ``executemany``: bounds the driver's parameter buffers, not the statement.
_CHUNK = 5_000


def upsert(
    conn: Connection,
    table: Table,
    rows: Sequence[Mapping[str, Any]],
    update: Iterable[str] = (),
) -> None:
    """Insert ``rows``; on a primary-key conflict update the ``update`` columns (or keep
    the existing row when ``update`` is empty). The last row per key wins.

    One cached statement per (table, dialect, columns) runs as ``executemany``: SQLite's
    and psycopg's (pipelined) batch paths, compiled once per process rather than a
    multi-row ``VALUES`` statement compiled afresh for each row count.
    """
    if not rows:
        return
    keys = tuple(c.name for c in table.primary_key.columns)
    # One statement may not touch a row twice (PostgreSQL): the last row per key wins.
    if len(keys) == 1:
        (name,) = keys
        unique = list({row[name]: row for row in rows}.values())
    else:
        unique = list({tuple(row[k] for k in keys): row for row in rows}.values())
    stmt = _upsert_statement(table, conn.dialect.name, keys, tuple(update))
    for start in range(0, len(unique), _CHUNK):
        conn.execute(stmt, unique[start : start + _CHUNK])


@lru_cache(maxsize=256)
def _upsert_statement(
    table: Table, dialect: str, keys: tuple[str, ...], update: tuple[str, ...]
) -> Executable:
    stmt = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)
    if update:
        return stmt.on_conflict_do_update(
            index_elements=list(keys), set_={name: stmt.excluded[name] for name in update}
        )
    return stmt.on_conflict_do_nothing(index_elements=list(keys))


def get_watermark(conn: Connection, source: str) -> str | None:
    return conn.execute(
        select(sync_state.c.watermark).where(sync_state.c.source == source)
    ).scalar_one_or_none()


def set_watermark(conn: Connection, source: str, watermark: str | None) -> None:
    if watermark is None:
        return
    upsert(
        conn,
        sync_state,
        [{"source": source, "watermark": watermark, "updated_at": datetime.now(UTC)}],
        update=("watermark", "updated_at"),
    )


def add_quarantined(
    conn: Connection, run_id: int, items: Sequence[Quarantined], now: datetime
) -> None:
    """Record records that could not be used, with field, reason and related IDs."""
    if items:
        conn.execute(
            insert(quarantine),
            [
                {
                    "run_id": run_id,
                    "kind": q.kind,
                    "source": q.source,
                    "record_id": q.record_id,
                    "field": q.field,
                    "reason": q.reason,
                    "detail": dict(q.detail) or None,
                    "created_at": now,
                }
                for q in items
            ],
        )
