"""Reporting currency: daily imported rates (direct and inverse pairs, the latest day on
or before the amount's), the mapping's fallback rates, amounts without a rate kept apart
and named; periods in the mapping's time zone; import rates' bad rows. Hand-computed,
SQLite and PostgreSQL; times relative to the fixed ``T0``."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, insert
from typer.testing import CliRunner

from revsync.cli import app
from revsync.config.reports import ReportsConfig
from revsync.reports.money import Converter
from revsync.reports.sources import Period, as_dict, sources_report
from revsync.store.schema import credits, deals, exchange_rates, spend, touchpoints, visitors

T0 = datetime(2026, 3, 10, 12, tzinfo=UTC)
DAY = T0.date()


def _store(engine: Engine) -> None:
    """One touch; won deals on it: GBP 100 on T0, EUR 200 on T0 + 2 days, JPY 1000 on T0,
    CHF 50 on T0 (no rate anywhere); USD spend 30 on T0."""
    won = [("g", "GBP", 100, 0), ("e", "EUR", 200, 2), ("j", "JPY", 1000, 0), ("c", "CHF", 50, 0)]
    with engine.begin() as conn:
        conn.execute(insert(visitors), [{"id": "v", "first_seen": T0, "last_seen": T0}])
        conn.execute(insert(touchpoints), [{"id": "t", "visitor_id": "v", "occurred_at": T0,
                                            "channel": "Paid Search", "campaign": "spring"}])  # fmt: skip
        for did, cur, amount, days in won:
            at = T0 + timedelta(days=days)
            conn.execute(insert(deals), [{
                "source": "crm", "id": did, "status": "won", "amount": Decimal(amount),
                "currency": cur, "close_at": at, "modified_at": at, "click_ids": {},
                "fields": {}, "synced_at": at}])  # fmt: skip
            conn.execute(insert(credits), [{
                "source": "crm", "deal_id": did, "model": "last_non_direct", "touchpoint_id": "t",
                "weight": "1", "amount": Decimal(amount), "currency": cur,
                "channel": "Paid Search"}])  # fmt: skip
        conn.execute(insert(spend), [{
            "platform": "google_ads", "account": "1", "day": DAY, "campaign": "spring",
            "ad_group": "", "keyword": "", "cost": Decimal(30), "currency": "USD",
            "updated_at": T0}])  # fmt: skip
        conn.execute(insert(exchange_rates), [
            {"day": DAY - timedelta(days=5), "base": "GBP", "quote": "USD", "rate": Decimal("1.2")},
            {"day": DAY + timedelta(days=1), "base": "GBP", "quote": "USD", "rate": Decimal("9")},
            # the inverse pair: 1 USD = 0.8 EUR, so 1 EUR = 1.25 USD
            {"day": DAY + timedelta(days=2), "base": "USD", "quote": "EUR", "rate": Decimal("0.8")},
        ])  # fmt: skip


def test_amounts_convert_at_the_rate_of_their_day_and_the_rest_stays_apart(
    engine: Engine,
) -> None:
    _store(engine)
    config = ReportsConfig(currency="USD", rates={"JPY": Decimal("0.0065")})
    with engine.connect() as conn:
        convert = Converter.load(conn, config)
        report = as_dict(sources_report(conn, "campaign", convert=convert))
    spring = {r["campaign"]: r for r in report["rows"]}["spring"]
    # GBP 100 at 1.2 (the later rate of 9 is not yet in force on T0) = 120; EUR 200 at
    # 1 / 0.8 = 250; JPY 1000 at the fallback 0.0065 = 6.5; CHF has no rate: kept apart
    usd = spring["currencies"]["USD"]
    assert usd["revenue"] == "376.50" and usd["won_deals"] == 3
    assert usd["spend"] == "30.00" and usd["roas"] == f"{376.5 / 30:.4f}"
    assert spring["currencies"]["CHF"]["revenue"] == "50.00"
    assert report["currency"] == "USD" and report["unconverted"] == ["CHF"]
    # without a reporting currency nothing is converted
    with engine.connect() as conn:
        plain = as_dict(sources_report(conn, "campaign"))
    assert set(plain["total"]["currencies"]) == {"GBP", "EUR", "JPY", "CHF", "USD"}
    assert plain["currency"] is None


def test_periods_are_whole_days_of_the_reports_time_zone(engine: Engine, tmp_path: Path) -> None:
    _store(engine)
    url = engine.url.render_as_string(hide_password=False)
    mapping = tmp_path / "revsync.yaml"
    mapping.write_text(
        "version: 1\nsources: [{name: crm, type: file, path: deals.csv}]\n"
        "reports: {currency: USD, timezone: Pacific/Kiritimati, rates: {CHF: 1.1}}\n"
    )
    where = ["--config", str(mapping), "--database-url", url]

    def revenue(first: date, last: date) -> Any:
        result = CliRunner().invoke(app, ["report", "sources", "--by", "campaign", "--from",
                                          str(first), "--to", str(last), "--json", *where])  # fmt: skip
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)["total"]["currencies"]

    # T0 is 12:00 UTC = 02:00 the next day at UTC+14: T0's UTC day holds no revenue, only
    # the spend the platform reported for that day
    same_day = revenue(DAY, DAY)["USD"]
    assert (same_day["revenue"], same_day["spend"]) == ("0.00", "30.00")
    next_day = revenue(DAY + timedelta(days=1), DAY + timedelta(days=1))
    assert next_day["USD"]["revenue"] == "175.00"  # GBP 120 + CHF 55; JPY has no rate here
    assert "JPY" in next_day
    csv = CliRunner().invoke(app, ["report", "sources", "--format", "csv", *where])
    assert csv.exit_code == 0 and csv.stdout.splitlines()[0].startswith("channel,visits,leads")


def test_import_rates_keeps_good_rows_and_rejects_bad_ones(engine: Engine, tmp_path: Path) -> None:
    url = engine.url.render_as_string(hide_password=False)
    rates = tmp_path / "rates.csv"
    rates.write_text(
        "date,base,quote,rate\n"
        "2026-03-01,EUR,USD,1.08\n"
        "2026-03-01,EUR,USD,1.09\n"  # the later row wins
        "2026-03-02,GBP,USD,-1\n"
        "2026-03-02,GBP,GBP,1\n"
        "2026-03-02,XXY,USD,1\n"
        "03/02/2026,GBP,USD,1.2\n"
    )
    result = CliRunner().invoke(app, ["import", "rates", str(rates), "--database-url", url])
    assert result.exit_code == 3, result.output  # partial: rows rejected
    rejects = (tmp_path / "rates.rejects.csv").read_text()
    for field in ("rate", "quote", "base", "date"):
        assert f",{field}," in rejects, rejects
    with engine.connect() as conn:
        stored = conn.execute(exchange_rates.select()).all()
    assert [(r.day, r.base, r.quote, Decimal(r.rate)) for r in stored] == [
        (date(2026, 3, 1), "EUR", "USD", Decimal("1.09"))
    ]


def test_a_period_without_bounds_is_all_time() -> None:
    assert Period.of_dates(None, None, UTC) == Period()
