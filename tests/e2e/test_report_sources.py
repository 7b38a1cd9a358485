"""``report sources`` on hand-computed data (issue #16's worked examples), SQLite and
PostgreSQL alike. Every time is relative to the fixed ``T0``, never to today."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, insert
from typer.testing import CliRunner

from revsync.cli import app
from revsync.reports.sources import Period, as_dict, sources_report
from revsync.store.schema import credits, deals, identities, touchpoints, visitors

T0 = datetime(2026, 3, 2, 9, tzinfo=UTC)  # a Monday; the period is March 2026
MARCH = Period.of_dates(date(2026, 3, 1), date(2026, 3, 31), UTC)
# channel, source, campaign, keyword, leads, GBP deals won (amount each)
SOURCES = {
    "A": ("Paid Search", "google", "spring", "crm software", 60, [Decimal(8500)] * 10),
    "B": ("Organic Search", "bing", None, None, 60, [Decimal(5000)] * 3),
    "C": ("Referral", "partner.example", None, None, 80, []),
}


def _build(engine: Engine) -> None:
    """200 leads in March (60 A, 60 B, 80 C): each visitor lands from its source, comes
    back direct, then fills a form; £85,000 won on A's touches, £15,000 on B's. Noise
    that must not count: a lead's second form, a lead and a deal in April, a lost deal, a
    USD deal, and a linear split."""
    rows: dict[Any, list[dict[str, Any]]] = {
        visitors: [], touchpoints: [], identities: [], deals: [], credits: []
    }  # fmt: skip

    def visitor(vid: str, at: datetime) -> None:
        rows[visitors].append({"id": vid, "first_seen": at, "last_seen": at})

    def touch(tid: str, vid: str, at: datetime, channel: str, *utm: str | None) -> None:
        src, campaign, term = (*utm, None, None, None)[:3]
        rows[touchpoints].append({
            "id": tid, "visitor_id": vid, "occurred_at": at, "channel": channel,
            "source": src, "campaign": campaign, "term": term,
        })  # fmt: skip

    def lead(iid: str, vid: str, at: datetime, email: str) -> None:
        rows[identities].append(
            {"id": iid, "visitor_id": vid, "observed_at": at, "event": "form",
             "email_sha256": email}
        )  # fmt: skip

    def deal(did: str, status: str, amount: Decimal, cur: str, at: datetime,
             shares: dict[str, str]) -> None:  # fmt: skip
        rows[deals].append({
            "source": "crm", "id": did, "status": status, "amount": amount, "currency": cur,
            "close_at": at, "modified_at": at, "click_ids": {}, "fields": {}, "synced_at": at,
        })  # fmt: skip
        for tid, weight in shares.items():
            for model in ("last_non_direct", "linear"):
                if model == "last_non_direct" and len(shares) > 1:
                    continue
                w = Fraction(weight) if model == "linear" else Fraction(1)
                rows[credits].append({
                    "source": "crm", "deal_id": did, "model": model, "touchpoint_id": tid,
                    "weight": str(w), "amount": amount * Decimal(w.numerator) / w.denominator,
                    "currency": cur, "channel": "x",
                })  # fmt: skip

    for name, (channel, src, campaign, term, leads, won) in SOURCES.items():
        for n in range(leads):
            vid, at = f"{name}{n}", T0 + timedelta(hours=n)
            visitor(vid, at)
            touch(f"{vid}-ad", vid, at, channel, src, campaign, term)
            touch(f"{vid}-direct", vid, at + timedelta(minutes=30), "Direct")
            lead(f"{vid}-form", vid, at + timedelta(minutes=40), f"{vid}@hash")
            lead(f"{vid}-form2", vid, at + timedelta(days=2), f"{vid}@hash")  # not a new lead
        for n, amount in enumerate(won):
            deal(f"{name}-won{n}", "won", amount, "GBP", T0 + timedelta(days=10),
                 {f"{name}{n}-ad": "1"})  # fmt: skip
    visitor("late", T0 + timedelta(days=40))  # April: outside the period
    touch(
        "late-ad",
        "late",
        T0 + timedelta(days=40),
        "Paid Search",
        "google",
        "spring",
        "crm software",
    )
    lead("late-form", "late", T0 + timedelta(days=40), "late@hash")
    deal("A-april", "won", Decimal(999), "GBP", T0 + timedelta(days=40), {"A0-ad": "1"})
    deal("A-lost", "lost", Decimal(777), "GBP", T0 + timedelta(days=5), {"A1-ad": "1"})
    deal("A-usd", "won", Decimal(1000), "USD", T0 + timedelta(days=5), {"A2-ad": "1"})
    deal("AB-split", "won", Decimal(3000), "EUR", T0 + timedelta(days=5),
         {"A3-ad": "1/2", "B3-ad": "1/2"})  # fmt: skip
    with engine.begin() as conn:
        for table, values in rows.items():
            conn.execute(insert(table), values)


def _by_key(report: dict[str, Any], by: str) -> dict[str, dict[str, Any]]:
    return {row[by]: row for row in report["rows"]}


def test_lead_value_worked_examples(engine: Engine) -> None:
    _build(engine)
    with engine.connect() as conn:
        report = as_dict(sources_report(conn, "channel", "last_non_direct", MARCH))
    rows = _by_key(report, "channel")
    a, b, c = rows["Paid Search"], rows["Organic Search"], rows["Referral"]
    assert (a["leads"], b["leads"], c["leads"], report["total"]["leads"]) == (60, 60, 80, 200)
    # the worked examples, to the penny
    assert a["currencies"]["GBP"] == {
        "won_deals": 10, "revenue": "85000.00", "lead_value": "1416.67",
        "lead_to_won": "0.1667", "average_deal": "8500.00",
    }  # fmt: skip
    assert b["currencies"]["GBP"]["revenue"] == "15000.00"
    assert b["currencies"]["GBP"]["lead_value"] == "250.00"
    assert b["currencies"]["GBP"]["average_deal"] == "5000.00"
    total = report["total"]["currencies"]
    assert (total["GBP"]["revenue"], total["GBP"]["lead_value"]) == ("100000.00", "500.00")
    assert total["GBP"]["won_deals"] == 13
    # money never mixed: the USD deal stands apart; the April and lost deals are left out
    assert a["currencies"]["USD"] == {
        "won_deals": 1, "revenue": "1000.00", "lead_value": "16.67",
        "lead_to_won": "0.0167", "average_deal": "1000.00",
    }  # fmt: skip
    assert "EUR" not in total  # a split deal has no last_non_direct credit here
    assert c["currencies"] == {}
    # visits: each visitor's ad landing and its direct return; Direct gets no leads
    assert (a["visits"], rows["Direct"]["visits"], rows["Direct"]["leads"]) == (60, 200, 0)
    assert a["visit_to_lead"] == "1.0000"


def test_split_deals_count_by_share_and_other_groupings(engine: Engine) -> None:
    _build(engine)
    with engine.connect() as conn:
        linear = as_dict(sources_report(conn, "channel", "linear", MARCH, currency="EUR"))
        by_campaign = as_dict(sources_report(conn, "campaign", "last_non_direct", MARCH))
        by_keyword = as_dict(sources_report(conn, "keyword", "last_non_direct"))
    eur = _by_key(linear, "channel")["Paid Search"]["currencies"]
    assert eur == {"EUR": {"won_deals": "1/2", "revenue": "1500.00", "lead_value": "25.00",
                           "lead_to_won": "0.0083", "average_deal": "3000.00"}}  # fmt: skip
    assert set(linear["total"]["currencies"]) == {"EUR"}
    spring = _by_key(by_campaign, "campaign")["spring"]
    assert spring["leads"] == 60 and spring["currencies"]["GBP"]["revenue"] == "85000.00"
    assert _by_key(by_campaign, "campaign")["(none)"]["leads"] == 140
    # all time: April's lead and deal count too
    keyword = _by_key(by_keyword, "keyword")["crm software"]
    assert keyword["leads"] == 61 and keyword["currencies"]["GBP"]["revenue"] == "85999.00"


def test_empty_period(engine: Engine) -> None:
    _build(engine)
    empty = Period.of_dates(date(2025, 1, 1), date(2025, 1, 31), UTC)
    with engine.connect() as conn:
        report = as_dict(sources_report(conn, "channel", "last_non_direct", empty))
    assert report["rows"] == []
    assert report["total"] == {"channel": "total", "visits": 0, "leads": 0,
                               "visit_to_lead": None, "leads_by_type": {},
                               "new_customers": 0, "currencies": {}}  # fmt: skip


def test_cli_on_the_demo_matches_report_models(tmp_path: Path) -> None:
    runner = CliRunner()
    demo = tmp_path / "demo"
    assert runner.invoke(app, ["demo", str(demo), "--visitors", "300"]).exit_code == 0
    where = ["-c", str(demo / "revsync.yaml"), "--database-url", f"sqlite:///{demo / 'revsync.db'}"]
    result = runner.invoke(app, ["report", "sources", "--json", "--by", "campaign", *where])
    assert result.exit_code == 0, result.output
    sources = json.loads(result.stdout)
    models = json.loads(runner.invoke(app, ["report", "models", "--json", *where]).stdout)
    # the demo reports in USD, EUR and GBP converted at its mapping's rates
    assert sources["currency"] == "USD" and sources["unconverted"] == []
    rates = {"USD": Decimal(1), "EUR": Decimal("1.08"), "GBP": Decimal("1.27")}
    expected = sum(Decimal(r["last_non_direct"]) * rates[r["currency"]] for r in models["rows"])
    [(cur, money)] = sources["total"]["currencies"].items()
    assert cur == "USD" and Decimal(money["revenue"]) == expected.quantize(Decimal("0.01"))
    table = runner.invoke(app, ["report", "sources", "--by", "keyword", *where]).stdout
    assert "lead value" in table and "…" not in table  # wide figures are never cut
    bad = runner.invoke(app, ["report", "sources", "--by", "planet", *where])
    assert bad.exit_code == 2


SPEND_CSV = """date,platform,account,campaign,cost,currency,clicks,impressions
2026-03-01,google_ads,123-456-7890,spring,"10,000.00",GBP,4000,90000
2026-03-31,google_ads,123-456-7890,spring,7000,GBP,3000,80000
2026-04-01,google_ads,123-456-7890,spring,99999,GBP,1,1
2026-03-15,meta,act_1,retargeting,3000,GBP,500,20000
2026-03-15,meta,act_1,retargeting,12,EURO,1,1
2026-03-16,meta,act_1,retargeting,-1,GBP,1,1
"""


def test_spend_cpl_roas_roi(engine: Engine, tmp_path: Path) -> None:
    from revsync.collect.spend import import_spend

    _build(engine)
    csv = tmp_path / "spend.csv"
    csv.write_text(SPEND_CSV)
    report = import_spend(engine, csv, now=T0)
    assert (report.read, report.imported, report.rejected) == (6, 4, 2)
    # re-reading a restated day replaces it (platforms restate recent spend)
    csv.write_text(SPEND_CSV.replace("2026-03-31,google_ads,123-456-7890,spring,7000",
                                     "2026-03-31,google_ads,123-456-7890,spring,5000"))  # fmt: skip
    import_spend(engine, csv, now=T0)
    with engine.connect() as conn:
        by_campaign = as_dict(sources_report(conn, "campaign", "last_non_direct", MARCH))
        by_channel = as_dict(sources_report(conn, "channel", "last_non_direct", MARCH))
    spring = _by_key(by_campaign, "campaign")["spring"]["currencies"]["GBP"]
    # March's spend on spring: 10,000 + 5,000 (April's 99,999 is outside the period)
    # CPL 15,000 / 60 = 250; ROAS 85,000 / 15,000 = 5.6667; ROI 70,000 / 15,000 = 4.6667
    assert (spring["spend"], spring["cpl"], spring["roas"], spring["roi"]) == (
        "15000.00", "250.00", "5.6667", "4.6667",
    )  # fmt: skip
    retargeting = _by_key(by_campaign, "campaign")["retargeting"]
    assert retargeting["leads"] == 0 and retargeting["currencies"]["GBP"] == {
        "won_deals": 0, "revenue": "0.00", "lead_value": None, "lead_to_won": None,
        "average_deal": None, "spend": "3000.00", "cpl": None, "cac": None, "roas": "0.0000",
        "roi": "-1.0000",
    }  # fmt: skip
    # other groupings: spend only in the total (18,000 over 200 leads = 90 a lead)
    total = by_channel["total"]["currencies"]["GBP"]
    assert (total["spend"], total["cpl"], total["roas"]) == ("18000.00", "90.00", "5.5556")
    assert _by_key(by_channel, "channel")["Paid Search"]["currencies"]["GBP"]["spend"] is None
    assert by_channel["total"]["currencies"]["USD"]["spend"] is None  # never converted
