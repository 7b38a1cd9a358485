"""``revsync forget`` leaves no trace of the person in any table or payload file; a dry run
changes nothing; what stays is non-personal."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import sqlalchemy as sa
from typer.testing import CliRunner

from revsync.cli import app
from revsync.destinations.pii import hash_person
from revsync.store.schema import metadata

runner = CliRunner()


def store_text(url: str) -> str:
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        rows = [json.dumps([str(v) for v in row]) for table in metadata.sorted_tables
                for row in conn.execute(table.select())]  # fmt: skip
    engine.dispose()
    return "\n".join(rows)


def test_forget_erases_a_person_from_every_table_and_payload_file(tmp_path: Path) -> None:
    demo = tmp_path / "demo"
    assert runner.invoke(app, ["demo", str(demo), "--visitors", "300"]).exit_code == 0
    url = f"sqlite:///{demo / 'revsync.db'}"
    engine = sa.create_engine(url)
    with engine.connect() as conn:  # a buyer whose deal was uploaded and who was on the site
        deal_id, contact_id = conn.execute(sa.text(
            "SELECT dc.deal_id, dc.contact_id FROM conversions c JOIN deal_contacts dc "
            "ON dc.deal_id = c.deal_id JOIN match_links m ON m.deal_id = c.deal_id "
            "WHERE c.state = 'sent' ORDER BY dc.deal_id LIMIT 1")).one()  # fmt: skip
        visitors = conn.execute(sa.text(
            "SELECT visitor_id FROM match_links WHERE deal_id = :d"), {"d": deal_id}
        ).scalars().all()  # fmt: skip
        clicks = {v for row in conn.execute(sa.text(
            "SELECT gclid, fbclid, fbc, fbp, ga_client_id FROM touchpoints WHERE visitor_id IN "
            f"({','.join(repr(v) for v in visitors)})")) for v in row if v}  # fmt: skip
    engine.dispose()
    with (demo / "deals.csv").open() as rows:
        email = next(r["email"] for r in csv.DictReader(rows) if r["contact_id"] == contact_id)
    person = hash_person(email, None)
    traces = {person.email, person.email_google, person.email_ga4, *clicks}
    traces |= {json.dumps(v) for v in visitors}  # a visitor ID as a whole value
    traces.discard(None)
    before = store_text(url)
    assert any(t in before for t in traces)
    where = ["--config", str(demo / "revsync.yaml"), "--database-url", url]

    dry = runner.invoke(app, ["forget", "--email", email, *where])
    assert dry.exit_code == 0 and "would erase" in dry.stdout, dry.output
    assert store_text(url) == before

    done = runner.invoke(app, ["forget", "--email", email, *where, "--yes"])
    assert done.exit_code == 0, done.output
    assert "erased:" in done.stdout and "payload file(s) rewritten" in done.stdout
    after = store_text(url)
    assert [t for t in traces if t in after] == []
    files = "\n".join(p.read_text() for p in (demo / "out").rglob("*") if p.is_file())
    assert [t for t in traces if t and len(t) >= 8 and t.strip('"') in files] == []
    engine = sa.create_engine(url)
    with engine.connect() as conn:  # the ledger's non-personal facts stay
        kept = conn.execute(sa.text(
            "SELECT count(*) FROM conversions WHERE deal_id = :d AND state = 'sent'"),
            {"d": deal_id}).scalar()  # fmt: skip
    engine.dispose()
    assert kept and kept > 0


def test_forget_needs_someone_to_forget() -> None:
    result = runner.invoke(app, ["forget"])
    assert result.exit_code == 2 and "name the person" in result.output
