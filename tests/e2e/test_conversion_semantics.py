"""What each platform is told about a won deal, on a real sync to the file transports:
one conversion per deal, worth the platform's credited share, with one person's
identifiers, only with consent, never dated in the future."""

from __future__ import annotations

import csv
import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select, update

from revsync.collect.importer import import_identities, import_touchpoints
from revsync.config.loader import load_config
from revsync.config.mapping import RevsyncConfig
from revsync.demo import DEMO_CONFIG, generate
from revsync.destinations.base import conversion_key
from revsync.destinations.pii import hash_person
from revsync.store.schema import conversions, deals
from revsync.sync.planning import EARLIER_KEYS
from tests.e2e.test_sync import iso, requests_in, run, write_deals

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
ANN, BOB = hash_person("ann@example.com", None), hash_person("bob@example.com", None)

MAPPING = """
attribution: {{model: {model}}}
{extra}
sources:
  - {{name: crm, type: file, path: deals.csv, timezone: America/New_York}}
destinations:
  - {{name: gads, type: google_ads, transport: file, output_dir: out, customer_id: "1234567890",
     conversion_action: "42", enhanced_conversions: true, account_timezone: America/New_York}}
  - {{name: ga4, type: ga4, transport: file, output_dir: out, measurement_id: G-TEST1,
     event_name: purchase}}
  - {{name: meta, type: meta, transport: file, output_dir: out, pixel_id: "99"}}
"""


def setup(
    tmp_path: Path, engine: Engine, sessions: list[dict[str, str]], leads: list[tuple[str, str]],
    model: str = "linear", extra: str = "",
) -> RevsyncConfig:  # fmt: skip
    """A mapping, the visitors' sessions and their leads (visitor, email) in the store."""
    (tmp_path / "revsync.yaml").write_text(MAPPING.format(model=model, extra=extra))
    columns = ["visitor_id", "occurred_at", "landing_url", "referrer", "_ga", "_fbp",
               "consent_ad_user_data"]  # fmt: skip
    lines = [",".join(columns)] + [",".join(s.get(c, "") for c in columns) for s in sessions]
    (tmp_path / "tp.csv").write_text("\n".join(lines) + "\n")
    assert import_touchpoints(engine, tmp_path / "tp.csv").rejected == 0
    first = {v: min(s["occurred_at"] for s in sessions if s["visitor_id"] == v) for v, _ in leads}
    (tmp_path / "leads.csv").write_text(
        "visitor_id,observed_at,email\n" + "".join(f"{v},{first[v]},{e}\n" for v, e in leads)
    )
    assert import_identities(engine, tmp_path / "leads.csv").rejected == 0
    return load_config(tmp_path / "revsync.yaml")


def session(visitor: str, ago: timedelta, url: str, consent: str = "granted", **more: str) -> dict[str, str]:  # fmt: skip
    return {"visitor_id": visitor, "occurred_at": iso(NOW - ago), "landing_url": url,
            "consent_ad_user_data": consent, **more}  # fmt: skip


def deal(deal_id: str, contacts: list[tuple[str, str]], amount: str = "900", status: str = "won",
         closed: datetime = NOW - timedelta(days=1)) -> list[dict[str, str]]:  # fmt: skip
    return [
        {"deal_id": deal_id, "status": status, "amount": amount, "currency": "USD",
         "close_date": closed.date().isoformat(), "modified_at": iso(closed),
         "contact_id": contact, "email": email}
        for contact, email in contacts
    ]  # fmt: skip


def rows(out: Path) -> dict[str, list[dict[str, Any]]]:
    """Each destination's rows on the wire, with the request fields that say whose they are."""
    sent = requests_in(out)
    ga4 = [{**e, "client_id": r["body"]["client_id"], "user_data": r["body"].get("user_data", {})}
           for r in sent.get("ga4.ga4.jsonl", []) for e in r["body"]["events"]]  # fmt: skip
    return {
        "gads": [c for r in sent.get("gads.google_ads.jsonl", []) for c in r["body"].get("conversions", [])],
        "adjust": [a for r in sent.get("gads.google_ads.jsonl", [])
                   for a in r["body"].get("conversion_adjustments", [])],
        "ga4": ga4,
        "meta": [e for r in sent.get("meta.meta.jsonl", []) for e in r["body"]["data"]],
    }  # fmt: skip


def test_linear_over_google_meta_and_organic_gives_each_platform_its_share(
    engine: Engine, tmp_path: Path
) -> None:
    config = setup(tmp_path, engine, [
        session("v1", timedelta(days=20), "https://x.com/?fbclid=IwAR0abc", _fbp="fb.1.1762000000000.7"),
        session("v1", timedelta(days=10), "https://x.com/?gclid=CjwGclid0001", _ga="GA1.1.11.22"),
        session("v1", timedelta(days=5), "https://x.com/blog", referrer="https://www.bing.com/"),
    ], [("v1", "ann@example.com")])  # fmt: skip
    write_deals(tmp_path / "deals.csv", deal("D1", [("C1", "ann@example.com")]))

    summary = run(engine, config, NOW)

    assert dict(summary.planned) == {"gads": 1, "ga4": 1, "meta": 1}  # one per deal each
    sent = rows(tmp_path / "out")
    [google], [ga4], [meta] = sent["gads"], sent["ga4"], sent["meta"]
    assert google["conversion_value"] == 300.0 and google["gclid"] == "CjwGclid0001"
    assert meta["custom_data"]["value"] == 300.0 and meta["user_data"]["fbc"].endswith("IwAR0abc")
    assert ga4["params"]["value"] == 900.0  # GA4 is the cross-channel view: the whole amount
    assert google["conversion_value"] + meta["custom_data"]["value"] <= 900.0
    assert google["consent"] == {"ad_user_data": "GRANTED"}
    # The same deal under last_touch: the organic visit takes it all, no ad platform gets any.
    write_deals(tmp_path / "deals.csv", deal("D2", [("C1", "ann@example.com")], amount="50",
                                             closed=NOW - timedelta(hours=2)))  # fmt: skip
    last = load_config_with(tmp_path, "linear", "last_touch")
    again = run(engine, last, NOW + timedelta(hours=1))
    assert dict(again.planned) == {"ga4": 1}, json.dumps(again.as_dict())
    assert again.skipped["gads: nothing credited to this platform's touchpoints"] == 1
    assert again.skipped["meta: nothing credited to this platform's touchpoints"] == 1
    assert again.status == "ok"


def load_config_with(tmp_path: Path, old: str, new: str) -> RevsyncConfig:
    path = tmp_path / "revsync.yaml"
    path.write_text(path.read_text().replace(f"model: {old}", f"model: {new}"))
    return load_config(path)


def test_every_event_carries_one_persons_identifiers(engine: Engine, tmp_path: Path) -> None:
    config = setup(tmp_path, engine, [
        session("vA", timedelta(days=9), "https://x.com/?gclid=CjwAnn0001", _ga="GA1.1.111.1",
                _fbp="fb.1.1762000000000.1"),
        session("vB", timedelta(days=3), "https://x.com/?fbclid=IwAR2bobAbCdEfGhIjKlMnOp", _ga="GA1.1.222.2",
                _fbp="fb.1.1762000000000.2"),
    ], [("vA", "ann@example.com"), ("vB", "bob@example.com")])  # fmt: skip
    write_deals(tmp_path / "deals.csv",
                deal("D1", [("C1", "ann@example.com"), ("C2", "bob@example.com")]))  # fmt: skip

    run(engine, config, NOW)

    sent = rows(tmp_path / "out")
    [google], [ga4], [meta] = sent["gads"], sent["ga4"], sent["meta"]
    assert google["gclid"] == "CjwAnn0001"  # Ann's click, Ann's email
    assert google["user_identifiers"] == [{"hashed_email": ANN.email_google}]
    # Equal credits: the latest touchpoint (Bob's) gives GA4 its client ID, and Bob's email.
    assert ga4["client_id"] == "222.2"
    assert ga4["user_data"]["sha256_email_address"] == [BOB.email_google]
    assert meta["user_data"]["fbp"] == "fb.1.1762000000000.2"
    assert meta["user_data"]["em"] == [BOB.email]


def test_a_person_who_denied_consent_is_sent_nowhere_even_by_email(
    engine: Engine, tmp_path: Path
) -> None:
    config = setup(tmp_path, engine, [
        session("v1", timedelta(days=9), "https://x.com/?utm_source=google&utm_medium=cpc",
                consent="denied", _ga="GA1.1.1.2", _fbp="fb.1.1762000000000.7"),
        session("v2", timedelta(days=8), "https://x.com/?gclid=CjwNoSignal", consent=""),
    ], [("v1", "ann@example.com"), ("v2", "bob@example.com")])  # fmt: skip
    write_deals(tmp_path / "deals.csv", deal("D1", [("C1", "ann@example.com")])
                + deal("D2", [("C2", "bob@example.com")]))  # fmt: skip

    summary = run(engine, config, NOW)

    assert sum(summary.planned.values()) == 0
    assert not (tmp_path / "out").exists() or rows(tmp_path / "out") == {
        "gads": [], "adjust": [], "ga4": [], "meta": []}  # fmt: skip
    assert summary.skipped["gads: visitor denied ad consent; not uploaded"] == 1
    assert summary.skipped["gads: no ad consent signal for this person "
                           "(privacy.unknown_consent: deny)"] == 1  # fmt: skip
    assert summary.status == "ok"
    with engine.connect() as conn:
        states = set(conn.execute(select(conversions.c.state)).scalars())
    assert states == {"skipped"}
    # An admin who has a legal basis for people without a signal says so in the mapping.
    granted = load_config_with(tmp_path, "linear}", "linear}\nprivacy: {unknown_consent: grant}")
    replanned = run(engine, granted, NOW + timedelta(hours=1), replan=True)
    assert dict(replanned.planned) == {"gads": 1}  # Bob; Ann denied, still nothing
    [google] = rows(tmp_path / "out")["gads"]
    assert google["gclid"] == "CjwNoSignal" and google["consent"] == {"ad_user_data": "GRANTED"}


def test_a_same_day_close_is_never_in_the_future_and_a_retraction_comes_after(
    engine: Engine, tmp_path: Path
) -> None:
    config = setup(tmp_path, engine, [
        session("v1", timedelta(days=2), "https://x.com/?gclid=CjwToday001&fbclid=IwAR2xAbCdEfGhIjKlMnOp",
                _ga="GA1.1.1.2"),
    ], [("v1", "ann@example.com")])  # fmt: skip
    morning = datetime(2026, 11, 20, 14, 0, tzinfo=UTC)  # 09:00 in New York; closes at 12:00
    write_deals(tmp_path / "deals.csv", deal("D1", [("C1", "ann@example.com")], closed=morning))
    run(engine, config, morning)
    write_deals(tmp_path / "deals.csv", deal("D1", [("C1", "ann@example.com")], status="lost",
                                             closed=morning + timedelta(minutes=1)))  # fmt: skip
    run(engine, config, morning + timedelta(minutes=1))

    sent = rows(tmp_path / "out")
    [google], [retraction] = sent["gads"], sent["adjust"]
    assert google["conversion_date_time"] == "2026-11-20 09:00:00-05:00"  # not 12:00
    assert retraction["adjustment_date_time"] > google["conversion_date_time"]
    for event in sent["ga4"]:
        assert event.get("timestamp_micros", 0) <= morning.timestamp() * 1_000_000 + 60e6


def test_a_store_synced_per_touchpoint_resyncs_without_a_duplicate(
    engine: Engine, tmp_path: Path
) -> None:
    config = setup(tmp_path, engine, [
        session("v1", timedelta(days=9), "https://x.com/?gclid=CjwOld0001", _ga="GA1.1.1.2",
                _fbp="fb.1.1762000000000.7"),
    ], [("v1", "ann@example.com")])  # fmt: skip
    write_deals(tmp_path / "deals.csv", deal("D1", [("C1", "ann@example.com")]))
    first = run(engine, config, NOW)
    assert dict(first.planned) == {"gads": 1, "ga4": 1}
    # Rewrite the ledger as revsync before one-conversion-per-deal kept it: one key per
    # (destination, action, deal, touchpoint).
    with engine.begin() as conn:
        for row in conn.execute(select(conversions).where(conversions.c.state == "sent")).all():
            tp = json.loads(row.payload)["touchpoint_id"]
            action = json.loads(row.payload)["action"]
            old = conversion_key(row.destination, action, row.source, row.deal_id, tp)
            conn.execute(update(conversions).where(conversions.c.key == row.key).values(key=old))
    before = requests_in(tmp_path / "out")

    again = run(engine, config, NOW + timedelta(hours=1), replan=True)

    assert sum(again.planned.values()) == 0
    assert again.skipped[f"gads: {EARLIER_KEYS}"] >= 1 and again.skipped[f"ga4: {EARLIER_KEYS}"] >= 1
    assert requests_in(tmp_path / "out") == before  # not one duplicate upload


def test_start_date_stops_a_backfill_from_planning_old_deals(engine: Engine, tmp_path: Path) -> None:
    config = setup(tmp_path, engine, [
        session("v1", timedelta(days=40), "https://x.com/?gclid=CjwOld0002", _ga="GA1.1.1.2"),
    ], [("v1", "ann@example.com")], extra=f"start_date: {(NOW - timedelta(days=10)).date()}")  # fmt: skip
    write_deals(tmp_path / "deals.csv", deal("D1", [("C1", "ann@example.com")],
                                             closed=NOW - timedelta(days=30)))  # fmt: skip
    summary = run(engine, config, NOW)
    assert sum(summary.planned.values()) == 0 and summary.status == "ok"
    assert summary.skipped["gads: closed before the destination's start date"] == 1


def test_the_demo_store_under_linear_keeps_every_promise(engine: Engine, tmp_path: Path) -> None:
    """The review's measurement, as a test: per destination at most one conversion per won
    deal; nothing of a consent-denied visitor on the wire; Google + Meta never above a
    deal's amount, GA4 never above it."""
    files = generate(tmp_path, visitors=1_500, seed=11, now=NOW)
    (tmp_path / "revsync.yaml").write_text(DEMO_CONFIG.replace("last_non_direct", "linear"))
    config = load_config(tmp_path / "revsync.yaml")
    import_touchpoints(engine, files.touchpoints)
    import_identities(engine, files.leads, "US")
    summary = run(engine, config, NOW)

    with engine.connect() as conn:
        won = {r.id: r.amount for r in conn.execute(select(deals).where(deals.c.status == "won"))}
        sent = conn.execute(
            select(conversions.c.destination, conversions.c.deal_id, conversions.c.value)
            .where(conversions.c.kind == "conversion", conversions.c.state == "sent")
        ).all()
    per_destination = Counter((d, deal_id) for d, deal_id, _ in sent)
    assert max(per_destination.values()) == 1 and sum(summary.planned.values()) == len(sent)
    ads: dict[str, Decimal] = {}
    for destination, deal_id, value in sent:
        amount = Decimal(str(won[deal_id]))
        assert Decimal(str(value)) <= amount
        if destination != "ga4":
            ads[deal_id] = ads.get(deal_id, Decimal(0)) + Decimal(str(value))
    assert all(total <= Decimal(str(won[d])) for d, total in ads.items())

    denied = {row["visitor_id"]: row for row in csv.DictReader(files.touchpoints.open())
              if row["consent_ad_user_data"] == "denied"}  # fmt: skip
    wire = (tmp_path / "out").read_text() if (tmp_path / "out").is_file() else "".join(
        p.read_text() for p in (tmp_path / "out").glob("*.jsonl"))  # fmt: skip
    for row in denied.values():
        for cookie in (row["_ga"].split(".", 2)[-1] if row["_ga"] else "", row["_fbp"]):
            assert not cookie or cookie not in wire
    assert summary.skipped["google-ads: visitor denied ad consent; not uploaded"] > 0
