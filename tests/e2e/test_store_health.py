"""The doctor's store checks on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, insert

from revsync.doctor import Status
from revsync.store.health import StoreHealth
from revsync.store.leases import Lease
from revsync.store.schema import conversions, runs

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def results(url: str) -> list[tuple[str, Status, str]]:
    health = StoreHealth(url, lambda: NOW)
    try:
        return [(r.check, r.status, r.detail) for r in health.check()]
    finally:
        health.close()


def row(key: str, destination: str, state: str) -> dict[str, object]:
    return {"key": key, "destination": destination, "platform": destination, "kind": "conversion",
            "source": "crm", "deal_id": "D1", "state": state, "value": 10, "currency": "USD",
            "event_time": NOW, "payload": "{}", "attempts": 8, "created_at": NOW,
            "updated_at": NOW}  # fmt: skip


def test_a_healthy_empty_store(engine: Engine, store_url: str) -> None:
    assert [(c, s) for c, s, _ in results(store_url)] == [
        ("store", Status.PASS), ("last run", Status.PASS), ("ledger", Status.PASS)]


def test_what_waits_for_an_operator_is_a_warning(engine: Engine, store_url: str) -> None:
    with engine.begin() as conn:
        conn.execute(insert(runs).values(started_at=NOW, status="failed"))
        conn.execute(insert(conversions), [row("k1", "ga4", "unknown"),
                                           row("k2", "ga4", "unknown"),
                                           row("k3", "meta", "failed"),
                                           row("k4", "gads", "sent")])  # fmt: skip
    left = Lease(engine, "destination:ga4", "run 7 on h (pid 1)", timedelta(minutes=10),
                 lambda: NOW - timedelta(hours=1))  # fmt: skip
    live = Lease(engine, "source:crm", "run 8 on h (pid 2)", timedelta(minutes=10), lambda: NOW)
    assert left.take() is None and live.take() is None

    found = {(c, d): s for c, s, d in results(store_url)}

    assert found[("last run", "run 1 failed, started 2026-11-25 12:00 UTC: see its summary")] is (
        Status.WARN)
    assert found[("leases", "destination:ga4: left by run 7 on h (pid 1), which ended without "
                  "giving it up (expired: the next run takes it over)")] is Status.WARN
    assert found[("leases", "source:crm: run 8 on h (pid 2) is at it until 12:10:00 UTC")] is (
        Status.PASS)
    ledger = sorted(d for c, d in found if c == "ledger")
    assert ledger == [
        "1 failed row(s) of meta (out of retries): revsync ledger show --destination meta "
        "--state failed, then revsync ledger settle",
        "2 unknown row(s) of ga4 (an interrupted send the platform may have got): revsync "
        "ledger show --destination ga4 --state unknown, then revsync ledger settle",
    ]


def test_no_store_yet_and_an_unreachable_one(tmp_path: Path) -> None:
    missing = f"sqlite:///{tmp_path / 'nope.db'}"
    assert results(missing) == [
        ("store", Status.WARN, f"no store at {missing} yet: the first sync creates it")]
    assert not (tmp_path / "nope.db").exists()  # the doctor never creates it
    [(check, status, detail)] = results("postgresql://revsync:pw@127.0.0.1:1/nowhere")
    assert (check, status) == ("store", Status.FAIL)
    assert detail == "cannot reach postgresql://revsync:***@127.0.0.1:1/nowhere: OperationalError"


def test_a_migration_cut_short_leaves_a_sqlite_store_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """All or nothing: a process dying mid-migration (here a migration that fails after
    creating a table) leaves no half-made schema that every later command trips over."""
    import shutil

    from sqlalchemy import create_engine, inspect

    from revsync.store import engine as store_engine

    scripts = tmp_path / "migrations"
    shutil.copytree(store_engine.MIGRATIONS, scripts)
    from alembic.script import ScriptDirectory

    head = ScriptDirectory(str(scripts)).get_current_head()  # the newest real migration
    (scripts / "versions" / "0099_dies.py").write_text(
        f'revision = "0099"\ndown_revision = "{head}"\nbranch_labels = None\n'
        "depends_on = None\n\n"
        "from alembic import op\nimport sqlalchemy as sa\n\n\n"
        "def upgrade() -> None:\n"
        '    op.create_table("half", sa.Column("id", sa.Integer, primary_key=True))\n'
        '    raise RuntimeError("killed")\n'
    )
    monkeypatch.setattr(store_engine, "MIGRATIONS", scripts)
    url = f"sqlite:///{tmp_path / 'store.db'}"
    with pytest.raises(RuntimeError, match="killed"):
        store_engine.open_store(url)
    assert inspect(create_engine(url)).get_table_names() == []  # nothing half-made
    monkeypatch.undo()
    store_engine.open_store(url).dispose()  # the real migrations then apply cleanly
