"""Issue 14, CRM export through a whole sync: bad deal rows are quarantined, the run goes
on and stores every good deal, only sane amounts reach a platform, and nothing revsync
writes is readable by others."""

from __future__ import annotations

import json
import stat
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Engine, select

from revsync.collect.importer import import_identities, import_touchpoints
from revsync.config.loader import load_config
from revsync.store.engine import open_store
from revsync.store.schema import deals, quarantine
from revsync.sync.factory import build_destinations, build_sources
from revsync.sync.job import SyncJob

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
CONFIG = """
sources:
  - {name: crm, type: file, path: deals.csv, fields: [region]}
destinations:
  - {name: gads, type: google_ads, transport: file, output_dir: out,
     customer_id: "1234567890", conversion_action: "42"}
"""
HEADER = "deal_id,status,amount,currency,close_date,modified_at,contact_id,email,Region,Notes\n"


def sync(engine: Engine, tmp_path: Path) -> tuple[str, list[str]]:
    """Ann clicked a Google ad ten days before ``NOW`` and became a lead; then one sync."""
    from revsync.config.settings import Settings

    (tmp_path / "tp.csv").write_text("visitor_id,occurred_at,landing_url,consent_ad_user_data\n"
                                     "v1,2026-11-10T09:00:00Z,https://x.com/?gclid=CjwGclid0001,granted\n")  # fmt: skip
    (tmp_path / "leads.csv").write_text("visitor_id,observed_at,email\n"
                                        "v1,2026-11-10T09:05:00Z,ann@example.com\n")  # fmt: skip
    assert import_touchpoints(engine, tmp_path / "tp.csv").imported == 1
    assert import_identities(engine, tmp_path / "leads.csv").imported == 1

    config = load_config(tmp_path / "revsync.yaml")
    clock = lambda: NOW  # noqa: E731
    summary = SyncJob(engine, config, build_sources(config, Settings()),
                      build_destinations(config, Settings(), clock), clock=clock).run()  # fmt: skip
    return summary.status, summary.failures


def test_bad_deal_rows_are_quarantined_and_the_run_goes_on(engine: Engine, tmp_path: Path) -> None:
    (tmp_path / "revsync.yaml").write_text(CONFIG)
    (tmp_path / "deals.csv").write_text(
        HEADER
        + "D1,won,100.999,JPY,2026-11-18,2026-11-18T10:00:00Z,C1,ann@example.com,EMEA,VIP ann\n"
        + "D2,won,1e400,USD,2026-11-18,2026-11-18T10:00:00Z,C2,bob@example.com,,\n"
        + "D3,won,50,USD,0001-01-01T00:00:00+05:00,2026-11-18T10:00:00Z,C3,cy@example.com,,\n"
        + "D4,won,0,USD,2026-11-18,2026-11-18T10:00:00Z,C4,dee@example.com,,\n"
        + "D5,won,70,USD,2029-11-18,2026-11-18T10:00:00Z,C5,eve@example.com,,\n"
        + "D6,won,1e20,USD,2026-11-18,2026-11-18T10:00:00Z,C6,fay@example.com,,\n"
        + "D7,lost,10,USD,2026-11-18,2026-11-18T10:00:00Z,C7,gus@example.com,,\n"
    )
    for _ in range(2):  # the next run reads the same export the same way
        status, failures = sync(engine, tmp_path)
        assert (status, failures) == ("partial", [])
    with engine.connect() as conn:
        stored = {r.id: r for r in conn.execute(select(deals))}
        held = {(r.record_id, r.field) for r in conn.execute(select(quarantine))}
    assert sorted(stored) == ["D1", "D7"]
    assert stored["D1"].amount == 101 and stored["D1"].fields == {"region": "EMEA"}
    assert held == {("D2", "amount"), ("D3", "close_date"), ("D4", "amount"),
                    ("D5", "close_date"), ("D6", "amount")}  # fmt: skip
    sent = (tmp_path / "out").glob("*.jsonl")
    bodies = "".join(path.read_text() for path in sent)
    assert "Infinity" not in bodies and "1e20" not in bodies.lower()
    values = [c["conversion_value"] for line in bodies.splitlines()
              for c in json.loads(line)["body"].get("conversions", [])]  # fmt: skip
    assert values and all(v == 101 for v in values)


def test_store_and_payload_files_are_created_owner_only(tmp_path: Path) -> None:
    (tmp_path / "revsync.yaml").write_text(CONFIG)
    (tmp_path / "deals.csv").write_text(
        HEADER + "D1,won,10,USD,2026-11-18,2026-11-18T10:00:00Z,C1,ann@example.com,,\n"
    )
    engine = open_store(f"sqlite:///{tmp_path / 'store' / 'revsync.db'}")
    try:
        sync(engine, tmp_path)
        with engine.connect() as conn:  # the -wal and -shm files exist while connected
            conn.execute(select(deals)).all()
            made = [*(tmp_path / "store").iterdir(), *(tmp_path / "out").iterdir()]
            names = {path.name for path in made}
            assert {"revsync.db", "revsync.db-wal", "revsync.db-shm"} <= names
            assert {path.name: stat.S_IMODE(path.stat().st_mode) for path in made} == {
                name: 0o600 for name in names
            }
    finally:
        engine.dispose()
