"""Rows that wait: an operator settles one row of a deal by its key (a GA4 send cut in two),
and a run stops retrying a platform in a storm once its retry budget is spent."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from types import SimpleNamespace

import pytest
from sqlalchemy import Engine, select, update

from revsync.domain import Conversion, ConversionKind, OutcomeStatus, UploadOutcome
from revsync.store.leases import Lease
from revsync.store.schema import conversions
from revsync.sync import ledger
from revsync.sync import upload as upload_module
from revsync.sync.summary import RunSummary
from revsync.sync.upload import upload

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


class _Storm:
    """A destination whose platform answers every batch with 429 after a while: each call
    moves the upload's own monotonic clock 0.03 s on, so the machine's speed plays no part."""

    name, platform, model, batch_size, resend_safe = "ga4", "ga4", "linear", 1, False
    config = SimpleNamespace(retry_budget_seconds=0.05)

    def __init__(self) -> None:
        self.calls, self.seconds = 0, 0.0

    def monotonic(self) -> float:
        return self.seconds

    def send(self, batch: list[Conversion]) -> list[UploadOutcome]:
        self.calls += 1
        self.seconds += 0.03  # the transport's own retries and waits
        return [UploadOutcome(c.key, OutcomeStatus.RETRY, "HTTP_429", "slow down") for c in batch]

    def close(self) -> None: ...


def test_a_429_storm_stops_at_the_runs_retry_budget(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    with engine.begin() as conn:
        ledger.add_planned(conn, [row(f"{n:032d}") for n in range(10)], 1, NOW)
    storm, summary = _Storm(), RunSummary(started_at=NOW)
    monkeypatch.setattr(upload_module, "time", storm)
    lease = Lease(engine, "destination:ga4", "run 1", timedelta(minutes=10), lambda: NOW)
    assert lease.take() is None
    upload(engine, storm, summary, lambda: NOW, lambda *_: None, lease)  # type: ignore[arg-type]
    assert storm.calls == 2  # 0.06 s of retries > the 0.05 s budget: the rest waits
    assert "the rest waits for the next run" in summary.warnings[-1]
    with engine.connect() as conn:
        planned = conn.execute(select(conversions.c.key).where(conversions.c.state == "planned"))
        assert len(planned.all()) == 8


def test_an_interrupted_ga4_row_says_what_is_known_of_its_request(engine: Engine) -> None:
    """For an operator deciding on an unknown row: when the send began, and that the run
    stopped before the answer (the request may or may not have gone out)."""
    began = NOW + timedelta(minutes=1)
    with engine.begin() as conn:
        ledger.add_planned(conn, [row("c" * 32)], 1, NOW)
        ledger.mark_sending(conn, ["c" * 32], began)
        assert ledger.recover_interrupted(conn, "ga4", False, NOW + timedelta(hours=1)) == 1
        [found] = ledger.rows_in(conn, "ga4", ledger.State.UNKNOWN, None, 10)
    assert found["error_code"] == "INTERRUPTED" and "may or may not" in str(found["error_message"])
    assert found["updated_at"].replace(tzinfo=UTC) == began
