"""Issue 18: the store's bulk write path (driver ``executemany`` with the columns' own bind
processors; ``COPY`` through a staging table on PostgreSQL from 1,000 rows) keeps what
SQLAlchemy's own path kept: last row per key wins, conflicts keep or update, defaults,
exact values, and a refused row surfaces as SQLAlchemy's error."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import sqlalchemy as sa
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import DateTime, Engine, select
from sqlalchemy.dialects import sqlite
from sqlalchemy.exc import IntegrityError, StatementError

from revsync.store.queries import upsert
from revsync.store.schema import UtcDateTime, conversions, touchpoints, visitors

NOW = datetime.now(UTC).replace(microsecond=123456)


def _visitor(n: int) -> dict[str, object]:
    return {"id": f"v{n}", "first_seen": NOW, "last_seen": NOW, "ga_client_id": None,
            "fbp": None}  # fmt: skip


def _touchpoint(n: int, visitor: str, campaign: str) -> dict[str, object]:
    return {
        "id": f"t{n:06d}", "visitor_id": visitor, "occurred_at": NOW - timedelta(seconds=n),
        "channel": "Paid Search", "source": "google", "medium": "cpc", "campaign": campaign,
        "consent_ad_user_data": n % 2 == 0, "consent_ad_personalization": None,
    }  # fmt: skip


def _conversion(n: int, state: str) -> dict[str, object]:
    return {
        "key": f"k{n:06d}", "destination": "ga4", "platform": "ga4", "kind": "won",
        "source": "crm", "deal_id": f"D{n}", "state": state, "value": Decimal("12.3400"),
        "currency": "USD", "event_time": NOW, "payload": "{}", "created_at": NOW,
        "updated_at": NOW,
    }  # fmt: skip


@pytest.mark.parametrize("count", [3, 2_500])  # below and above the COPY threshold
def test_bulk_upsert_keeps_or_updates_like_insert_on_conflict(engine: Engine, count: int) -> None:
    with engine.begin() as conn:
        upsert(conn, visitors, [_visitor(1)])
        rows = [_touchpoint(n, "v1", "first") for n in range(count)]
        upsert(conn, touchpoints, [*rows, _touchpoint(0, "v1", "last row wins")])
    with engine.begin() as conn:  # conflicts keep the stored rows, new ones are added
        upsert(conn, touchpoints, [_touchpoint(n, "v1", "again") for n in range(count + 1)])
        upsert(conn, conversions, [_conversion(n, "planned") for n in range(count)])
        upsert(conn, conversions, [_conversion(n, "sent") for n in range(count)],
               update=("state",))  # fmt: skip
    with engine.connect() as conn:
        stored = {r.id: r for r in conn.execute(select(touchpoints))}
        states = conn.execute(select(conversions.c.state, conversions.c.attempts,
                                     conversions.c.value)).all()  # fmt: skip
    assert len(stored) == count + 1
    assert stored["t000000"].campaign == "last row wins"
    assert stored[f"t{count:06d}"].campaign == "again"
    assert {r.campaign for r in stored.values()} == {"first", "last row wins", "again"}
    one = stored["t000001"]
    assert one.occurred_at == NOW - timedelta(seconds=1)  # exact to the microsecond, UTC
    assert one.consent_ad_user_data is False and one.consent_ad_personalization is None
    assert states == [("sent", 0, Decimal("12.3400"))] * count  # the column default applied


@pytest.mark.parametrize("count", [3, 2_500])
def test_a_refused_row_raises_sqlalchemys_error_and_writes_nothing(
    engine: Engine, count: int
) -> None:
    rows = [_touchpoint(n, "v1", "x") for n in range(count)]
    rows[-1] = _touchpoint(count, "no such visitor", "x")  # the foreign key refuses it
    with pytest.raises(IntegrityError), engine.begin() as conn:
        upsert(conn, visitors, [_visitor(1)])
        upsert(conn, touchpoints, rows)
    with engine.connect() as conn:
        assert conn.execute(select(sa.func.count()).select_from(touchpoints)).scalar() == 0
    naive = [{**_touchpoint(n, "v1", "x"), "occurred_at": datetime(2026, 1, 1)}
             for n in range(count)]  # fmt: skip
    with pytest.raises(StatementError, match="naive datetime"), engine.begin() as conn:
        upsert(conn, visitors, [_visitor(1)])
        upsert(conn, touchpoints, naive)


@given(st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(2999, 12, 30),
                    timezones=st.timezones()))  # fmt: skip
def test_sqlite_datetimes_are_stored_as_sqlalchemy_stores_them(value: datetime) -> None:
    dialect = sqlite.dialect()
    ours = UtcDateTime().dialect_impl(dialect).bind_processor(dialect)
    theirs = DateTime().dialect_impl(dialect).bind_processor(dialect)
    assert ours is not None and theirs is not None
    assert ours(value) == theirs(value.astimezone(UTC).replace(tzinfo=None))


def test_postgresql_sessions_plan_each_execution_for_its_values(postgres_url: str) -> None:
    """A generic plan for ``deal_id IN (…)`` scanned the whole ledger once psycopg had
    prepared the statement (issue 18: ~440 s of a 100k-deal first sync)."""
    from revsync.store.engine import open_store

    engine = open_store(postgres_url)
    try:
        for _ in range(2):  # a pooled connection keeps it after a rollback
            with engine.connect() as conn:
                mode = conn.execute(sa.text("SHOW plan_cache_mode")).scalar()
                conn.rollback()
            assert mode == "force_custom_plan"
    finally:
        engine.dispose()


def test_bulk_written_tables_get_fresh_planner_statistics(engine: Engine) -> None:
    """PostgreSQL plans by statistics autovacuum refreshes about a minute late: a table
    filled moments ago looked empty and ledger look-ups scanned it whole (issue 18)."""
    from revsync.store.queries import analyze

    with engine.begin() as conn:
        upsert(conn, visitors, [_visitor(n) for n in range(1_500)])
        analyze(conn, [visitors, touchpoints])  # SQLite: nothing to do
    if engine.dialect.name != "postgresql":
        return
    with engine.connect() as conn:
        estimate = conn.execute(
            sa.text("SELECT reltuples FROM pg_class WHERE relname = 'visitors'")
        ).scalar()
    assert estimate == 1_500
