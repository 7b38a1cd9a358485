"""Small, dialect-aware writes and reads shared by every stage."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Table, insert, select
from sqlalchemy.dialects import postgresql, sqlite

from revsync.domain import Quarantined
from revsync.store.schema import quarantine, sync_state

# SQLite allows 32,766 bound parameters per statement; stay well below for wide tables.
_MAX_PARAMS = 30_000


def upsert(
    conn: Connection,
    table: Table,
    rows: Sequence[Mapping[str, Any]],
    update: Iterable[str] = (),
) -> None:
    """Insert ``rows``; on a primary-key conflict update the ``update`` columns (or keep
    the existing row when ``update`` is empty)."""
    if not rows:
        return
    keys = [c.name for c in table.primary_key.columns]
    # One statement may not touch a row twice (PostgreSQL): the last row per key wins.
    rows = list({tuple(row[k] for k in keys): row for row in rows}.values())
    update = list(update)
    dialect = conn.dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    chunk = max(1, _MAX_PARAMS // max(1, len(rows[0])))
    for start in range(0, len(rows), chunk):
        stmt = insert(table).values(list(rows[start : start + chunk]))
        if update:
            stmt = stmt.on_conflict_do_update(
                index_elements=keys, set_={name: stmt.excluded[name] for name in update}
            )
        else:
            stmt = stmt.on_conflict_do_nothing(index_elements=keys)
        conn.execute(stmt)


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
