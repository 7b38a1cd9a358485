"""``report pipeline`` on hand-computed data (SQLite and PostgreSQL), and the stage
history a sync records. Times are relative to the fixed ``T0``."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, insert, select
from typer.testing import CliRunner

from revsync.cli import app
from revsync.domain import Deal, DealStatus
from revsync.reports.pipeline import pipeline_report
from revsync.reports.sources import Period
from revsync.store.schema import (
    contacts,
    credits,
    deal_contacts,
    deal_stages,
    deals,
    identities,
    touchpoints,
    visitors,
)
from revsync.sync.deal_writes import store_deals

T0 = datetime(2026, 4, 1, 9, tzinfo=UTC)


def _at(days: float) -> datetime:
    return T0 + timedelta(days=days)


# deal: status, amount, created (days), stages entered (days, stage)
DEALS: dict[str, tuple[str, int, float, list[tuple[float, str]]]] = {
    "d1": ("won", 1000, 0, [(0, "Qualified"), (2, "Proposal"), (5, "Closed Won")]),
    "d2": ("lost", 400, 0, [(0, "Qualified"), (4, "Proposal"), (6, "Closed Lost")]),
    "d3": ("open", 300, 1, [(1, "Qualified")]),
    "d4": ("lost", 200, -10, [(-10, "Qualified"), (-9, "Closed Lost")]),
}


def _store(engine: Engine) -> None:
    """d1 is credited to a Paid Search touch; d2's primary contact was a lead from Organic
    Search (a later direct visit does not count); d3 and d4 have no known source."""
    with engine.begin() as conn:
        for did, (status, amount, created, stages) in DEALS.items():
            conn.execute(insert(deals), [{
                "source": "crm", "id": did, "status": status, "amount": Decimal(amount),
                "currency": "GBP", "close_at": _at(stages[-1][0]) if status != "open" else None,
                "modified_at": _at(stages[-1][0]), "stage": stages[-1][1], "click_ids": {},
                "fields": {}, "synced_at": T0, "created_at": _at(created)}])  # fmt: skip
            conn.execute(insert(deal_stages), [
                {"source": "crm", "deal_id": did, "entered_at": _at(day), "stage": stage,
                 "origin": "crm"} for day, stage in stages])  # fmt: skip
        conn.execute(insert(visitors), [{"id": v, "first_seen": T0, "last_seen": T0}
                                        for v in ("v1", "v2")])  # fmt: skip
        conn.execute(insert(touchpoints), [
            {"id": "t1", "visitor_id": "v1", "occurred_at": _at(-3), "channel": "Paid Search"},
            {"id": "t2", "visitor_id": "v2", "occurred_at": _at(-3), "channel": "Organic Search"},
            {"id": "t3", "visitor_id": "v2", "occurred_at": _at(-2), "channel": "Direct"},
        ])  # fmt: skip
        conn.execute(insert(credits), [{
            "source": "crm", "deal_id": "d1", "model": "last_non_direct", "touchpoint_id": "t1",
            "weight": "1", "amount": Decimal(1000), "currency": "GBP",
            "channel": "Paid Search"}])  # fmt: skip
        conn.execute(insert(identities), [{"id": "i2", "visitor_id": "v2",
                                           "observed_at": _at(-1), "event": "form",
                                           "email_sha256": "h2"}])  # fmt: skip
        conn.execute(insert(contacts), [{"source": "crm", "crm_id": "c2", "email_sha256": "h2",
                                         "click_ids": {}}])  # fmt: skip
        conn.execute(insert(deal_contacts), [{"source": "crm", "deal_id": "d2",
                                              "contact_id": "c2", "is_primary": True}])  # fmt: skip


def test_stages_conversion_days_and_sources(engine: Engine) -> None:
    _store(engine)
    with engine.connect() as conn:
        data = pipeline_report(conn, "channel")
    stages = {s["stage"]: s for s in data["stages"]}
    # mean entry positions: Qualified 0, Proposal 1, Closed Lost 1.5, Closed Won 2
    assert list(stages) == ["Qualified", "Proposal", "Closed Lost", "Closed Won"]
    q, p, lost, won = stages.values()
    assert (q["entered"], q["to_next"], q["median_days"]) == (4, "0.7500", 2.0)  # 2, 4, 1 days
    assert (p["entered"], p["to_next"], p["median_days"]) == (2, "1.0000", 2.5)  # 3 and 2 days
    assert (lost["entered"], lost["to_next"], lost["median_days"]) == (2, "0.0000", None)
    assert won["to_next"] is None
    assert (q["deals"], q["open"], p["deals"], lost["lost"], won["won"]) == (1, 1, 0, 2, 1)
    assert lost["amount"] == {"GBP": "600.00"}
    rows = {(r["stage"], r["source"]): r["deals"] for r in data["rows"]}
    assert rows == {("Closed Won", "Paid Search"): 1, ("Closed Lost", "Organic Search"): 1,
                    ("Closed Lost", "(unknown)"): 1, ("Qualified", "(unknown)"): 1}  # fmt: skip
    assert data["total"]["deals"] == 4


def test_closing_stages_come_last_and_a_repeated_stage_is_not_a_move(engine: Engine) -> None:
    """d5 is open in Negotiation (position 2), after Closed Lost's mean position 1.5: the
    closing stages still come last. The sync's own entry of d1's Closed Won, two hours
    after the CRM's, is not a move: Closed Won has no days in stage."""
    _store(engine)
    with engine.begin() as conn:
        conn.execute(insert(deals), [{
            "source": "crm", "id": "d5", "status": "open", "amount": Decimal(50),
            "currency": "GBP", "modified_at": _at(3), "stage": "Negotiation", "click_ids": {},
            "fields": {}, "synced_at": T0, "created_at": _at(0)}])  # fmt: skip
        conn.execute(insert(deal_stages), [
            {"source": "crm", "deal_id": "d5", "entered_at": _at(day), "stage": stage,
             "origin": "crm"} for day, stage in ((0, "Qualified"), (1, "Proposal"),
                                                 (3, "Negotiation"))] + [
            {"source": "crm", "deal_id": "d1", "entered_at": _at(5) + timedelta(hours=2),
             "stage": "Closed Won", "origin": "sync"}])  # fmt: skip
    with engine.connect() as conn:
        data = pipeline_report(conn, "channel")
    stages = {s["stage"]: s for s in data["stages"]}
    assert list(stages) == ["Qualified", "Proposal", "Negotiation", "Closed Lost", "Closed Won"]
    assert (stages["Closed Won"]["entered"], stages["Closed Won"]["median_days"]) == (1, None)
    # Proposal: d1 and d2 moved on (to closing stages after it), d5 to Negotiation
    assert (stages["Proposal"]["entered"], stages["Proposal"]["to_next"]) == (3, "1.0000")


def test_amounts_in_the_reporting_currency_at_their_close_date(engine: Engine) -> None:
    """GBP→USD is 1.25 from day -20 and 1.30 from day 5: d1 (won day 5) 1,300, d2 (lost day
    6) 520, d4 (lost day -9) 250, d3 (open, no close date: its creation, day 1) 375. A JPY
    deal has no rate: it stays in JPY, on its own line, and the report names it."""
    from revsync.config.reports import ReportsConfig
    from revsync.reports.money import Converter
    from revsync.store.schema import exchange_rates

    _store(engine)
    with engine.begin() as conn:
        conn.execute(
            insert(exchange_rates),
            [
                {"day": _at(-20).date(), "base": "GBP", "quote": "USD", "rate": Decimal("1.25")},
                {"day": _at(5).date(), "base": "GBP", "quote": "USD", "rate": Decimal("1.30")},
            ],
        )
        conn.execute(insert(deals), [{
            "source": "crm", "id": "d5", "status": "open", "amount": Decimal(5000),
            "currency": "JPY", "modified_at": _at(1), "stage": "Qualified", "click_ids": {},
            "fields": {}, "synced_at": T0, "created_at": _at(1)}])  # fmt: skip
    with engine.connect() as conn:
        convert = Converter.load(conn, ReportsConfig(currency="USD"))
        data = pipeline_report(conn, "channel", convert=convert)
    stages = {s["stage"]: s["amount"] for s in data["stages"]}
    assert stages["Closed Won"] == {"USD": "1300.00"}
    assert stages["Closed Lost"] == {"USD": "770.00"}  # 520 + 250
    assert stages["Qualified"] == {"JPY": "5000", "USD": "375.00"}
    assert data["total"]["amount"] == {"JPY": "5000", "USD": "2445.00"}
    assert (data["currency"], data["unconverted"]) == ("USD", ["JPY"])
    rows = {(r["stage"], r["source"]): r["amount"] for r in data["rows"]}
    assert rows[("Closed Lost", "Organic Search")] == {"USD": "520.00"}
    # without a reporting currency: per currency, as stored
    with engine.connect() as conn:
        plain = pipeline_report(conn, "channel")
    assert plain["total"]["amount"] == {"GBP": "1900.00", "JPY": "5000"}
    assert (plain["currency"], plain["unconverted"]) == (None, [])


def test_a_period_counts_the_deals_created_in_it(engine: Engine) -> None:
    _store(engine)
    april = Period.of_dates(date(2026, 4, 1), date(2026, 4, 30), UTC)
    with engine.connect() as conn:
        data = pipeline_report(conn, "channel", period=april)
    assert data["total"]["deals"] == 3  # d4 was created in March
    assert {s["stage"]: s["deals"] for s in data["stages"]}["Closed Lost"] == 1


def test_a_sync_records_each_new_stage_once(engine: Engine) -> None:
    def deal(stage: str, days: float) -> Deal:
        return Deal("crm", "x", DealStatus.OPEN, Decimal(5), "GBP", None, _at(days), stage,
                    stage_history=((_at(-1), "Lead"),))  # fmt: skip

    for stage, days in (("Qualified", 0), ("Qualified", 1), ("Proposal", 2), ("Proposal", 2)):
        with engine.begin() as conn:
            store_deals(conn, [deal(stage, days)], T0)
    with engine.connect() as conn:
        rows = conn.execute(select(deal_stages.c.stage, deal_stages.c.entered_at,
                                   deal_stages.c.origin).order_by(deal_stages.c.entered_at)).all()  # fmt: skip
    assert [tuple(r) for r in rows] == [("Lead", _at(-1), "crm"), ("Qualified", _at(0), "sync"),
                                        ("Proposal", _at(2), "sync")]  # fmt: skip


def test_pipeline_cli(engine: Engine, tmp_path: Path) -> None:
    _store(engine)
    mapping = tmp_path / "revsync.yaml"
    mapping.write_text("version: 1\nsources: [{name: crm, type: file, path: deals.csv}]\n")
    where = ["--config", str(mapping), "--database-url",
             engine.url.render_as_string(hide_password=False)]  # fmt: skip
    runner = CliRunner()
    result = runner.invoke(app, ["report", "pipeline", "--json", *where])
    assert result.exit_code == 0, result.output
    data: dict[str, Any] = json.loads(result.stdout)
    assert data["total"]["deals"] == 4
    table = runner.invoke(app, ["report", "pipeline", *where])
    assert table.exit_code == 0 and "median days" in table.stdout
    assert runner.invoke(app, ["report", "pipeline", "--by", "keyword", *where]).exit_code == 2
