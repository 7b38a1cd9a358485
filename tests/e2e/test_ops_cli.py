"""Commands an operator runs: run history, watermarks, migrations and the version; and
read-only commands that never create or migrate a store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from revsync.cli import app

runner = CliRunner()


@pytest.fixture
def demo_store(tmp_path: Path) -> str:
    assert runner.invoke(app, ["demo", str(tmp_path / "demo"), "--visitors", "100"]).exit_code == 0
    return f"sqlite:///{tmp_path / 'demo' / 'revsync.db'}"


@pytest.mark.parametrize(
    "command",
    [["ledger", "show"], ["runs"], ["runs", "show", "1"], ["state", "show"], ["db", "current"]],
)  # fmt: skip
def test_a_read_only_command_never_creates_a_store(
    command: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("REVSYNC_DATABASE_URL", raising=False)
    result = runner.invoke(app, command)
    assert result.exit_code == 1, result.output
    assert "no store" in result.output
    assert not (tmp_path / "revsync.db").exists()


def test_runs_list_and_show_what_each_run_did(demo_store: str) -> None:
    listed = runner.invoke(app, ["runs", "--database-url", demo_store, "--json"])
    lines = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [r["run_id"] for r in lines] == [2, 1] and lines[0]["status"] in ("ok", "partial")
    table = runner.invoke(app, ["runs", "--database-url", demo_store])
    assert "Runs (2, newest first)" in table.stdout
    shown = json.loads(
        runner.invoke(app, ["runs", "show", "1", "--database-url", demo_store]).stdout
    )
    assert shown["summary"]["run_id"] == 1 and shown["summary"]["deals_read"]
    missing = runner.invoke(app, ["runs", "show", "99", "--database-url", demo_store])
    assert missing.exit_code == 2 and "no run 99" in missing.output


def test_state_changes_are_dry_runs_unless_yes(demo_store: str) -> None:
    where = ["--database-url", demo_store]
    engine = sa.create_engine(demo_store)

    def watermark() -> str | None:
        with engine.connect() as conn:
            return conn.execute(sa.text("SELECT watermark FROM sync_state")).scalar()

    before = watermark()
    dry = runner.invoke(app, ["state", "set", "crm", "2026-01-01T00:00:00Z", *where])
    assert dry.exit_code == 0 and "dry run" in dry.stdout and watermark() == before
    moved = runner.invoke(app, ["state", "set", "crm", "2026-01-01T00:00:00Z", "--yes", *where])
    assert moved.exit_code == 0 and watermark() == "2026-01-01T00:00:00Z"
    assert runner.invoke(app, ["state", "reset", "crm", "--yes", *where]).exit_code == 0
    assert watermark() is None
    unknown = runner.invoke(app, ["state", "reset", "nope", *where])
    assert unknown.exit_code == 2 and "no source 'nope'" in unknown.output
    ledger = runner.invoke(app, ["ledger", "show", "--destination", "nope", *where])
    assert ledger.exit_code == 2 and "no destination 'nope'" in ledger.output


def test_migrations_say_what_they_apply_and_can_be_left_to_a_release_step(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    touchpoints = tmp_path / "tp.csv"
    touchpoints.write_text(
        "visitor_id,occurred_at,landing_url\nv1,2026-01-01T00:00:00Z,https://x.com/\n"
    )
    monkeypatch.setenv("REVSYNC_AUTO_MIGRATE", "false")
    refused = runner.invoke(app, ["import", "touchpoints", str(touchpoints), "--database-url", url])
    assert refused.exit_code == 1 and "run `revsync db upgrade`" in refused.output
    first = runner.invoke(app, ["db", "upgrade", "--database-url", url])
    applied = " ".join(first.stdout.split())  # Rich wraps a long list of revisions
    assert applied.startswith("applied 0001, ") and "the store is at" in applied
    again = runner.invoke(app, ["db", "upgrade", "--database-url", url])
    assert again.stdout.startswith("nothing to apply")
    assert "up to date" in runner.invoke(app, ["db", "current", "--database-url", url]).stdout
    history = runner.invoke(app, ["db", "history", "--database-url", url]).stdout.splitlines()
    assert history and all(line.startswith("applied") for line in history)
    stored = runner.invoke(app, ["import", "touchpoints", str(touchpoints), "--database-url", url])
    assert stored.exit_code == 0, stored.output


def test_upgrade_sql_prints_the_migrations_and_applies_nothing(postgres_url: str) -> None:
    engine = sa.create_engine(postgres_url)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    result = runner.invoke(app, ["db", "upgrade", "--sql", "--database-url", postgres_url])
    assert result.exit_code == 0 and "CREATE TABLE contacts" in result.stdout
    with engine.connect() as conn:
        assert not sa.inspect(conn).get_table_names()


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout.startswith("revsync ")


def test_json_logs_carry_the_run_id_and_a_partial_run_says_why(tmp_path: Path) -> None:
    """A real ``revsync sync`` process with REVSYNC_LOG_FORMAT=json: every stderr line is a
    JSON object, those made during the run carry its ID, a partial run logs a warning, and
    ``--json`` prints the summary on one line."""
    import os
    import subprocess
    import sys

    demo = tmp_path / "demo"
    assert runner.invoke(app, ["demo", str(demo), "--visitors", "100"]).exit_code == 0
    store = f"sqlite:///{tmp_path / 'fresh.db'}"
    for kind, name in (("touchpoints", "touchpoints.csv"), ("identities", "leads.csv")):
        where = ["--config", str(demo / "revsync.yaml"), "--database-url", store]
        assert runner.invoke(app, ["import", kind, str(demo / name), *where]).exit_code == 0
    source = str(Path(__file__).parents[2] / "src")
    env = {**os.environ, "PYTHONPATH": source, "REVSYNC_LOG_FORMAT": "json"}
    done = subprocess.run(
        [str(Path(sys.executable).parent / "revsync"), "sync", "--json", "--config", str(demo / "revsync.yaml"),
         "--database-url", store],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 3, done.stderr  # the demo export has malformed rows
    records = [json.loads(line) for line in done.stderr.splitlines()]
    assert records and {"time", "level", "logger", "message"} <= set(records[0])
    assert {r["run_id"] for r in records if r["logger"].startswith("revsync.sync")} == {1}
    partial = [r for r in records if "partial" in r["message"] and r["level"] == "WARNING"]
    assert partial and "records quarantined" in partial[0]["message"]
    (line,) = done.stdout.splitlines()
    assert json.loads(line)["status"] == "partial"
