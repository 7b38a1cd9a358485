"""Store, migrations and bulk import, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, inspect, select

from revsync.collect.importer import import_identities, import_touchpoints
from revsync.errors import ConfigError
from revsync.store.engine import needs_upgrade
from revsync.store.schema import identities, touchpoints, visitors


def test_migrations_create_every_table_and_are_applied(engine: Engine) -> None:
    names = set(inspect(engine).get_table_names())
    assert {
        "visitors",
        "touchpoints",
        "identities",
        "deals",
        "contacts",
        "conversions",
        "sync_state",
        "runs",
        "credits",
        "quarantine",
        "match_links",
    } <= names
    assert not needs_upgrade(engine)


def test_times_come_back_timezone_aware_utc(engine: Engine) -> None:
    when = datetime(2026, 11, 2, 10, 30, tzinfo=timezone(timedelta(hours=2)))
    with engine.begin() as conn:
        conn.execute(visitors.insert().values(id="v1", first_seen=when, last_seen=when))
        back = conn.execute(select(visitors.c.first_seen)).scalar_one()
    assert back == when and back.tzinfo is not None and back.utcoffset() == timedelta(0)


TOUCHPOINTS_CSV = """visitor_id,occurred_at,landing_url,referrer,_ga,_fbp,consent_ad_user_data,ip
v1,2026-11-01T10:00:00Z,https://x.com/?gclid=Cj0KCQiAabc123&utm_campaign=brand,,GA1.1.111.222,fb.1.1700000000000.42,granted,203.0.113.77
v1,2026-11-02T10:00:00Z,https://x.com/,https://www.google.com/,GA1.1.111.222,,granted,
v2,2026-11-03T10:00:00+01:00,https://x.com/?fbclid=IwAR_Zz9&utm_source=facebook&utm_medium=paid_social,,,,denied,
,2026-11-03T10:00:00Z,https://x.com/,,,,,
v3,yesterday,https://x.com/,,,,,
v4,2026-11-03T10:00:00,https://x.com/,,,,,
v5,2026-11-03T10:00:00Z,https://x.com/?gclid=%3Cbad%3E,,,,,
v6,2026-11-03T10:00:00Z,https://x.com/,,GA9.zz,,,
v7,2026-11-03T10:00:00Z,https://x.com/,,,,maybe,
v8,2026-11-03T10:00:00Z,https://x.com/,,,,,not-an-ip
v9,2026-11-03T10:00:00Z,https://x.com/,,,,,,extra
"""


def test_import_touchpoints_keeps_good_rows_and_reports_bad_ones(
    engine: Engine, tmp_path: Path
) -> None:
    path = tmp_path / "touchpoints.csv"
    path.write_text(TOUCHPOINTS_CSV)
    report = import_touchpoints(engine, path)
    assert (report.read, report.imported, report.rejected) == (11, 3, 8)
    rejects = (tmp_path / "touchpoints.rejects.csv").read_text()
    for expected in (
        "row 5", "visitor_id: is required", "occurred_at: 'yesterday' is not an ISO 8601",
        "has no UTC offset", "gclid has characters", "_ga is neither", "consent_ad_user_data",
        "ip: 'not-an-ip'", "more values than header",
    ):  # fmt: skip
        assert expected in rejects or expected in "\n".join(report.errors), expected
    with engine.connect() as conn:
        rows = {
            r["visitor_id"] + r["channel"]: r for r in conn.execute(select(touchpoints)).mappings()
        }
    paid = rows["v1Paid Search"]
    assert paid["gclid"] == "Cj0KCQiAabc123"
    assert paid["ga_client_id"] == "111.222"
    assert paid["ip"] == "203.0.113.0"  # truncated by default
    assert rows["v1Organic Search"]["source"] == "google"
    social = rows["v2Paid Social"]
    assert social["fbc"] == "fb.1.1793696400000.IwAR_Zz9"
    assert social["consent_ad_user_data"] is False
    # re-importing the same file changes nothing
    again = import_touchpoints(engine, path)
    assert again.imported == 3
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(touchpoints)).scalar_one() == 3


def test_import_identities_hashes_and_drops_raw_pii(engine: Engine, tmp_path: Path) -> None:
    path = tmp_path / "leads.jsonl"
    lines = [
        {"visitor_id": "v1", "observed_at": "2026-11-01T10:05:00Z", "email": "Jane.Doe@Gmail.com",
         "phone": "+1 650 555 1212"},
        {"visitor_id": "v2", "observed_at": "2026-11-01T10:05:00Z", "email": "nope"},
        {"visitor_id": "v3", "observed_at": "2026-11-01T10:05:00Z"},
        {"visitor_id": "v4", "observed_at": "2026-11-01T10:05:00Z", "crm_id": "003ABC"},
    ]  # fmt: skip
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n{broken\n")
    report = import_identities(engine, path)
    assert (report.imported, report.rejected) == (2, 3)
    rejects = [json.loads(x) for x in (tmp_path / "leads.rejects.jsonl").read_text().splitlines()]
    assert [(r["_row"], r["_error"].split(":")[0]) for r in rejects] == [
        (2, "email"), (3, "email"), (5, "(row)"),
    ]  # fmt: skip
    with engine.connect() as conn:
        stored = (
            conn.execute(select(identities).where(identities.c.visitor_id == "v1")).mappings().one()
        )
    dump = json.dumps(dict(stored), default=str).lower()
    assert "jane" not in dump and "5551212" not in dump
    assert stored["email_sha256"] and stored["phone_sha256"]


def test_import_missing_file_is_a_clear_error(engine: Engine, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="missing.csv"):
        import_touchpoints(engine, tmp_path / "missing.csv")


def test_non_utf8_byte_rejects_its_row_and_utf16_refuses_the_file(
    engine: Engine, tmp_path: Path
) -> None:
    path = tmp_path / "latin1.csv"
    path.write_bytes(
        "visitor_id,occurred_at\nv\xe9,2026-11-01T00:00:00Z\nv2,2026-11-01T00:00:00Z\n".encode(
            "latin-1"
        )
    )
    report = import_touchpoints(engine, path)
    assert (report.imported, report.rejected) == (1, 1)
    assert "row 2: visitor_id: is not UTF-8 text (byte 0xE9)" in report.errors[0]
    wide = tmp_path / "utf16.csv"
    wide.write_text("visitor_id,occurred_at\nv1,2026-11-01T00:00:00Z\n", encoding="utf-16")
    with pytest.raises(ConfigError, match=r"utf16.csv: not UTF-8 text"):
        import_touchpoints(engine, wide)
    assert not (tmp_path / "utf16.rejects.csv").exists()


def test_the_schema_head_constant_is_alembics_head() -> None:
    """``needs_upgrade`` compares stores with ``SCHEMA_HEAD`` (no alembic import on a
    no-op run): a new migration must move it."""
    from alembic.script import ScriptDirectory

    from revsync.store.engine import MIGRATIONS, SCHEMA_HEAD

    assert ScriptDirectory(str(MIGRATIONS)).get_current_head() == SCHEMA_HEAD


def test_the_migrations_build_exactly_the_schema_the_code_declares(engine: Engine) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from revsync.store.schema import metadata

    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), metadata) == []
