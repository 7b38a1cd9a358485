"""``revsync sync --dry-run``: the exact request bodies are written, and nothing changes in
the store (SQLite or PostgreSQL); a real run then plans what the dry run showed."""

from __future__ import annotations

import json
from pathlib import Path

import sqlalchemy as sa
from typer.testing import CliRunner

from revsync.cli import app

runner = CliRunner()


def store_state(url: str) -> dict[str, int]:
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        counts = {t: conn.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar_one()
                  for t in ("conversions", "deals", "runs", "sync_state", "credits")}  # fmt: skip
    engine.dispose()
    return counts


def test_a_dry_run_writes_the_bodies_and_changes_nothing(tmp_path: Path, store_url: str) -> None:
    demo = tmp_path / "demo"
    assert runner.invoke(app, ["demo", str(demo), "--visitors", "200"]).exit_code == 0
    where = ["--config", str(demo / "revsync.yaml"), "--database-url", store_url]
    for kind, name in (("touchpoints", "touchpoints.csv"), ("identities", "leads.csv")):
        assert runner.invoke(app, ["import", kind, str(demo / name), *where]).exit_code == 0
    before = store_state(store_url)
    bodies = tmp_path / "dry"
    dry = runner.invoke(app, ["sync", "--json", "--dry-run", str(bodies), *where])
    assert dry.exit_code == 3, dry.output  # partial: the demo export's malformed rows
    shown = json.loads(dry.stdout)
    planned = sum(shown["conversions_planned"].values())
    assert planned > 0 and shown["dry_run"] == str(bodies)
    written = {p.name for p in bodies.glob("*.jsonl")}
    assert written == {"google-ads.google_ads.jsonl", "ga4.ga4.jsonl", "meta.meta.jsonl"}
    assert store_state(store_url) == before  # not one row, run or watermark
    real = json.loads(runner.invoke(app, ["sync", "--json", *where]).stdout)
    assert sum(real["conversions_planned"].values()) == planned
