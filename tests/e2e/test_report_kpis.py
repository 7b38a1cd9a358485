"""``report kpis`` and ``report uploads`` on hand-computed data, SQLite and PostgreSQL.
Every time is relative to the fixed ``T0``."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, insert
from typer.testing import CliRunner

from revsync.cli import app
from revsync.reports.kpis import kpis_report, previous
from revsync.reports.sources import Period
from revsync.reports.uploads import uploads_report
from revsync.store.schema import conversions, deals, identities, runs, spend, touchpoints, visitors

T0 = datetime(2026, 6, 1, tzinfo=UTC)
JUNE = Period.of_dates(date(2026, 6, 1), date(2026, 6, 30), UTC)


def _deal(
    did: str, amount: int, days: int, account: str | None, status: str = "won"
) -> dict[str, Any]:
    at = T0 + timedelta(days=days)
    return {"source": "crm", "id": did, "status": status, "amount": Decimal(amount),
            "currency": "GBP", "close_at": at, "modified_at": at, "click_ids": {},
            "fields": {}, "synced_at": at, "account_id": account}  # fmt: skip


def _store(engine: Engine) -> None:
    """June: 40 visits, 8 leads, won: acme 1,000 (acme also won 3,000 in April), globex 500
    and 1,500, a deal without account 2,000; spend 800. May: 10 visits, 4 leads, won initech
    600; spend 300."""
    won = [_deal("a1", 1000, 3, "acme"), _deal("a0", 3000, -50, "acme"),
           _deal("g1", 500, 5, "globex"), _deal("g2", 1500, 9, "globex"),
           _deal("n1", 2000, 12, None), _deal("i1", 600, -10, "initech"),
           _deal("lost", 9999, 4, "acme", "lost")]  # fmt: skip
    rows: dict[Any, list[dict[str, Any]]] = {visitors: [], touchpoints: [], identities: []}
    for n, days in enumerate([2] * 40 + [-15] * 10):
        vid, at = f"v{n}", T0 + timedelta(days=days, minutes=n)
        rows[visitors].append({"id": vid, "first_seen": at, "last_seen": at})
        rows[touchpoints].append({"id": f"t{n}", "visitor_id": vid, "occurred_at": at,
                                  "channel": "Paid Search"})  # fmt: skip
    for n in range(12):  # 8 leads in June, 4 in May
        vid = f"v{n}" if n < 8 else f"v{40 + n - 8}"
        at = T0 + timedelta(days=2 if n < 8 else -15, hours=1, minutes=n)
        rows[identities].append({"id": f"i{n}", "visitor_id": vid, "observed_at": at,
                                 "event": "form", "email_sha256": f"p{n}"})  # fmt: skip
    costs = [(date(2026, 6, 10), 800), (date(2026, 5, 20), 300)]
    with engine.begin() as conn:
        conn.execute(insert(deals), won)
        for table, values in rows.items():
            conn.execute(insert(table), values)
        conn.execute(insert(spend), [{
            "platform": "google_ads", "account": "1", "day": day, "campaign": "c",
            "ad_group": "", "keyword": "", "cost": Decimal(cost), "currency": "GBP",
            "updated_at": T0} for day, cost in costs])  # fmt: skip


def test_kpis_beside_the_previous_period(engine: Engine) -> None:
    _store(engine)
    with engine.connect() as conn:
        data = kpis_report(conn, JUNE, "last_non_direct")
    now, before = data["current"], data["previous"]
    assert data["previous_period"] == ["2026-05-02", "2026-05-31"]
    assert (now["visits"], now["leads"], now["won_deals"]) == (40, 8, 4)
    assert (now["customers"], now["new_customers"]) == (3, 2)  # acme won before June
    assert now["visit_to_lead"] == "0.2000" and now["lead_to_won"] == "0.5000"
    assert now["currencies"]["GBP"] == {
        "revenue": "5000.00",  # 1,000 + 500 + 1,500 + 2,000
        "average_deal": "1250.00",  # 5,000 / 4
        "lead_value": "625.00",  # 5,000 / 8
        "arpc": "1666.67",  # 5,000 / 3 customers
        "cltv": "2666.67",  # (4,000 acme + 2,000 globex + 2,000) / 3
        "spend": "800.00", "cpl": "100.00",  # 800 / 8 leads
        "cac": "400.00",  # 800 / 2 new customers
        "roas": "6.2500", "roi": "5.2500",
    }  # fmt: skip
    assert (before["visits"], before["leads"], before["won_deals"]) == (10, 4, 1)
    assert before["currencies"]["GBP"]["revenue"] == "600.00"
    assert before["currencies"]["GBP"]["cac"] == "300.00"


def test_an_empty_period_and_its_predecessor() -> None:
    june = previous(JUNE)
    assert (june.first_day, june.last_day) == (date(2026, 5, 2), date(2026, 5, 31))


def test_kpis_cli_needs_both_ends_and_prints_csv(engine: Engine, tmp_path: Path) -> None:
    _store(engine)
    url = engine.url.render_as_string(hide_password=False)
    mapping = tmp_path / "revsync.yaml"
    mapping.write_text("version: 1\nsources: [{name: crm, type: file, path: deals.csv}]\n")
    where = ["--config", str(mapping), "--database-url", url]
    runner = CliRunner()
    assert runner.invoke(app, ["report", "kpis", "--from", "2026-06-01", *where]).exit_code == 2
    result = runner.invoke(app, ["report", "kpis", "--from", "2026-06-01", "--to",
                                 "2026-06-30", "--format", "csv", *where])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "cac,GBP,400.00,300.00" in result.stdout
    table = runner.invoke(app, ["report", "kpis", "--from", "2026-06-01", "--to",
                                "2026-06-30", *where])  # fmt: skip
    assert "previous (2026-05-02 to 2026-05-31)" in table.stdout and "…" not in table.stdout


def _ledger(did: str, kind: str, state: str, value: int, key: str, **extra: Any) -> dict[str, Any]:
    return {"key": key, "destination": "ads", "platform": "google_ads", "kind": kind,
            "source": "crm", "deal_id": did, "state": state, "value": Decimal(value),
            "currency": "GBP", "event_time": T0, "payload": "{}", "attempts": 0,
            "created_at": T0, "updated_at": T0 + timedelta(minutes=len(key)),
            "original_key": None, "error_code": None, "error_message": None, **extra}  # fmt: skip


def test_uploads_per_destination(engine: Engine) -> None:
    """June's four won deals at `ads`: a1 sent 1,000 then restated to 800; g1 sent 500 then
    retracted; g2 rejected; n1 skipped for no gclid. May's i1 is outside the period."""
    _store(engine)
    rows = [
        _ledger("a1", "conversion", "sent", 1000, "a"),
        _ledger("a1", "restatement", "sent", 800, "a-r", original_key="a"),
        _ledger("g1", "conversion", "sent", 500, "g"),
        _ledger("g1", "retraction", "sent", 0, "g-rr", original_key="g"),
        _ledger("g2", "conversion", "rejected", 1500, "h", error_code="INVALID_GCLID"),
        _ledger("n1", "conversion", "skipped", 0, "n", error_code="gclid",
                error_message="ads: no gclid on the platform's credited touchpoints"),
        _ledger("i1", "conversion", "sent", 600, "i"),
    ]  # fmt: skip
    with engine.begin() as conn:
        conn.execute(insert(conversions), rows)
        conn.execute(insert(runs), [{"started_at": T0, "status": "ok",
                                     "summary": {"deals_read": {"crm": 7},
                                                 "results": {"ads": {"sent": 3}}}}])  # fmt: skip
    with engine.connect() as conn:
        data = uploads_report(conn, JUNE, ["ads", "meta"])
    ads, meta = data["destinations"]
    assert data["won_deals"] == 4 and data["won_revenue"] == {"GBP": "5000.00"}
    assert {k: ads[k] for k in ("planned", "sent", "rejected", "pending", "skipped")} == {
        "planned": 3, "sent": 2, "rejected": 1, "pending": 0, "skipped": 1}  # fmt: skip
    assert ads["rejected_by_code"] == {"INVALID_GCLID": 1}
    assert ads["skipped_by_reason"] == {"no gclid on the platform's credited touchpoints": 1}
    assert (ads["matched_deals"], ads["match_rate"]) == (3, "0.7500")
    assert ads["revenue_uploaded"] == {"GBP": "800.00"}  # restated a1; g1 retracted
    assert ads["adjustments_sent"] == 2
    assert meta["planned"] == 0 and meta["match_rate"] == "0.0000"  # nothing planned there
    assert data["runs"][0]["deals_read"] == 7 and data["runs"][0]["results"] == {"ads": {"sent": 3}}


def test_uploads_cli_json(engine: Engine, tmp_path: Path) -> None:
    _store(engine)
    url = engine.url.render_as_string(hide_password=False)
    mapping = tmp_path / "revsync.yaml"
    mapping.write_text("version: 1\nsources: [{name: crm, type: file, path: deals.csv}]\n")
    result = CliRunner().invoke(app, ["report", "uploads", "--json", "--config", str(mapping),
                                      "--database-url", url])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["won_deals"] == 6  # all time
