"""An operator settles one row of a deal by its key, the others of the deal stay as they are
(a GA4 send cut in two: one request arrived, the other did not)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from sqlalchemy import Engine, select, update

from revsync.domain import Conversion, ConversionKind
from revsync.store.schema import conversions
from revsync.sync import ledger

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def row(key: str) -> Conversion:
    return Conversion(key, "ga4", "ga4", ConversionKind.CONVERSION, "crm", "D1", "purchase",
                      NOW, Decimal(10), "USD")  # fmt: skip


def test_settle_one_row_by_key(engine: Engine) -> None:
    with engine.begin() as conn:
        ledger.add_planned(conn, [row("a" * 32), row("b" * 32)], 1, NOW)
        conn.execute(update(conversions).values(state="unknown"))
        moved = ledger.settle(conn, "ga4", ledger.State.UNKNOWN, ledger.State.SENT, NOW,
                              "D1", "a" * 32)  # fmt: skip
        states = dict(conn.execute(select(conversions.c.key, conversions.c.state)).all())
    assert moved == 1 and states == {"a" * 32: "sent", "b" * 32: "unknown"}
