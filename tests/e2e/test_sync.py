"""The whole loop on the file transports, on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select, update

from revsync.collect.importer import import_identities, import_touchpoints
from revsync.config.loader import load_config
from revsync.config.mapping import RevsyncConfig
from revsync.config.settings import Settings
from revsync.demo import DEMO_CONFIG, generate
from revsync.sources.base import DealPage, DealSource
from revsync.store.leases import Lease
from revsync.store.schema import conversions, leases, quarantine, sync_state
from revsync.sync.factory import build_destinations, build_sources
from revsync.sync.job import SyncJob
from revsync.sync.summary import RunSummary

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def run(engine: Engine, config: RevsyncConfig, now: datetime = NOW, **options: Any) -> RunSummary:
    """One sync at ``now`` over the mapping's sources and destinations; ``options`` go to
    :class:`SyncJob` (replan, progress, stop, ...)."""
    settings = Settings()
    clock = lambda: now  # noqa: E731
    return SyncJob(
        engine,
        config,
        build_sources(config, settings),
        build_destinations(config, settings, clock),
        clock=clock,
        **options,
    ).run()


def requests_in(out: Path) -> dict[str, list[dict]]:
    return {
        path.name: [json.loads(line) for line in path.read_text().splitlines()]
        for path in sorted(out.glob("*.jsonl"))
    }


def test_demo_dataset_end_to_end_and_second_run_sends_nothing(
    engine: Engine, tmp_path: Path
) -> None:
    files = generate(tmp_path, visitors=600, seed=3, now=NOW)
    (tmp_path / "revsync.yaml").write_text(DEMO_CONFIG)
    config = load_config(tmp_path / "revsync.yaml")
    assert import_touchpoints(engine, files.touchpoints).rejected == 0
    assert import_identities(engine, files.leads, "US").rejected == 0

    first = run(engine, config)
    assert first.status == "partial"  # the four malformed CRM rows are quarantined
    assert {(q.record_id, q.field) for q in first.quarantined} >= {
        ("D-BAD-1", "amount"), ("D-BAD-2", "currency"), ("C-bad3", "email"), ("D-BAD-4", "close_date"),
    }  # fmt: skip
    assert first.deals_matched > 0 and first.deals_won >= first.deals_matched
    assert set(first.planned) == {"google-ads", "ga4", "meta"}
    sent = requests_in(tmp_path / "out")
    google = sent["google-ads.google_ads.jsonl"]
    assert all(len(r["body"]["conversions"]) <= 2000 for r in google)
    rows = [c for r in google for c in r["body"]["conversions"]]
    assert len(rows) == first.planned["google-ads"]
    for row in rows:
        assert sum(k in row for k in ("gclid", "gbraid", "wbraid")) == 1
        assert row["conversion_date_time"][-6] in "+-" and row["conversion_date_time"][-3] == ":"
        assert len(row["order_id"]) == 32
    ga4 = sent["ga4.ga4.jsonl"]
    assert all(len(r["body"]["events"]) <= 25 for r in ga4)
    assert all(len({r["body"]["client_id"]}) == 1 for r in ga4)
    meta = [e for r in sent["meta.meta.jsonl"] for e in r["body"]["data"]]
    assert all(NOW.timestamp() - e["event_time"] <= 7 * 86400 for e in meta)
    assert all(e["action_source"] == "system_generated" for e in meta)

    with engine.connect() as conn:
        ledger_rows = conn.execute(
            select(func.count()).select_from(conversions).where(conversions.c.state != "skipped")
        ).scalar_one()
        quarantined = conn.execute(select(func.count()).select_from(quarantine)).scalar_one()
        watermark = conn.execute(select(sync_state.c.watermark)).scalar_one()
    assert ledger_rows == sum(first.planned.values())
    assert quarantined == 4 and watermark

    second = run(engine, config, NOW + timedelta(minutes=5))
    assert sum(second.planned.values()) == 0
    assert requests_in(tmp_path / "out") == sent  # nothing new written anywhere


def write_deals(path: Path, rows: list[dict[str, str]]) -> None:
    fields = ["deal_id", "status", "amount", "currency", "close_date", "modified_at",
              "contact_id", "email", "gclid"]  # fmt: skip
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        for row in rows:
            writer.writerow({f: row.get(f, "") for f in fields})


CONFIG = """
sources:
  - {name: crm, type: file, path: deals.csv}
destinations:
  - {name: gads, type: google_ads, transport: file, output_dir: out,
     customer_id: "1234567890", conversion_action: "42"}
  - {name: ga4, type: ga4, transport: file, output_dir: out, measurement_id: G-TEST1}
  - {name: meta, type: meta, transport: file, output_dir: out, pixel_id: "99", value_mode: full}
"""


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def scenario(engine: Engine, tmp_path: Path, now: datetime = NOW) -> RevsyncConfig:
    """Two visitors who clicked a Google ad about ten days before ``now`` and became leads five
    minutes later: v1 (ann@, consent granted) and v2 (bob@, consent denied)."""
    (tmp_path / "revsync.yaml").write_text(CONFIG)
    v1, v2 = now - timedelta(days=10, hours=3), now - timedelta(days=9, hours=3)
    fbp = f"fb.1.{int((v1 - timedelta(days=9)).timestamp() * 1000)}.7"
    (tmp_path / "tp.csv").write_text(
        "visitor_id,occurred_at,landing_url,_ga,_fbp,consent_ad_user_data\n"
        f"v1,{iso(v1)},https://x.com/?gclid=CjwGclid0001,GA1.1.1.2,{fbp},granted\n"
        f"v2,{iso(v2)},https://x.com/?gclid=CjwGclid0002,GA1.1.3.4,,denied\n"
    )
    lead = timedelta(minutes=5)
    (tmp_path / "leads.csv").write_text(
        "visitor_id,observed_at,email\n"
        f"v1,{iso(v1 + lead)},ann@example.com\n"
        f"v2,{iso(v2 + lead)},bob@example.com\n"
    )
    import_touchpoints(engine, tmp_path / "tp.csv")
    import_identities(engine, tmp_path / "leads.csv")
    return load_config(tmp_path / "revsync.yaml")


def one_won_deal(engine: Engine, tmp_path: Path, now: datetime = NOW) -> RevsyncConfig:
    """:func:`scenario` with one won deal, D1, whose contact (ann@) visitor v1 is; it closed
    two days before ``now``."""
    config = scenario(engine, tmp_path, now)
    closed = now - timedelta(days=2, hours=2)
    write_deals(tmp_path / "deals.csv", [
        {"deal_id": "D1", "status": "won", "amount": "1000", "currency": "USD",
         "close_date": closed.date().isoformat(), "modified_at": iso(closed),
         "contact_id": "C1", "email": "ann@example.com"},
    ])  # fmt: skip
    return config


def test_amount_change_is_restated_and_lost_deal_retracted(engine: Engine, tmp_path: Path) -> None:
    config = scenario(engine, tmp_path)
    deals = tmp_path / "deals.csv"
    write_deals(deals, [
        {"deal_id": "D1", "status": "won", "amount": "1000", "currency": "USD",
         "close_date": "2026-11-18", "modified_at": "2026-11-18T10:00:00Z",
         "contact_id": "C1", "email": "ANN@example.com"},
        {"deal_id": "D2", "status": "won", "amount": "500", "currency": "USD",
         "close_date": "2026-11-18", "modified_at": "2026-11-18T10:00:00Z",
         "contact_id": "C2", "email": "bob@example.com"},
    ])  # fmt: skip
    first = run(engine, config)
    # D2's visitor denied consent: nothing of it is uploaded anywhere.
    assert dict(first.planned) == {"gads": 1, "ga4": 1, "meta": 1}
    assert first.skipped == {
        "gads: visitor denied ad consent; not uploaded": 1,
        "ga4: visitor denied ad consent; not uploaded": 1,
        "meta: visitor denied ad consent; not uploaded": 1,
    }
    write_deals(deals, [
        {"deal_id": "D1", "status": "won", "amount": "1250", "currency": "USD",
         "close_date": "2026-11-18", "modified_at": "2026-11-19T10:00:00Z",
         "contact_id": "C1", "email": "ann@example.com"},
    ])  # fmt: skip
    second = run(engine, config, NOW + timedelta(hours=1))
    assert dict(second.planned) == {"gads": 1}  # a RESTATEMENT; GA4/Meta cannot restate
    assert second.skipped["ga4: amount changed; platform cannot restate"] == 1
    third = run(engine, config, NOW + timedelta(hours=2))
    assert sum(third.planned.values()) == 0  # the restatement is not planned twice

    write_deals(deals, [
        {"deal_id": "D1", "status": "lost", "amount": "1250", "currency": "USD",
         "close_date": "2026-11-18", "modified_at": "2026-11-20T10:00:00Z",
         "contact_id": "C1", "email": "ann@example.com"},
    ])  # fmt: skip
    fourth = run(engine, config, NOW + timedelta(hours=3))
    assert dict(fourth.planned) == {"gads": 1}  # a RETRACTION
    assert fourth.skipped["meta: deal lost; platform cannot retract"] == 1
    # A close_convert_lead is no purchase: there is nothing for a GA4 refund to take back.
    assert fourth.skipped["ga4: deal lost; platform cannot retract"] == 1

    bodies = requests_in(tmp_path / "out")
    adjustments = [
        a
        for r in bodies["gads.google_ads.jsonl"]
        for a in r["body"].get("conversion_adjustments", [])
    ]
    assert [a["adjustment_type"] for a in adjustments] == ["RESTATEMENT", "RETRACTION"]
    assert adjustments[0]["restatement_value"]["adjusted_value"] == 1250.0
    original = bodies["gads.google_ads.jsonl"][0]["body"]["conversions"][0]
    assert {a["order_id"] for a in adjustments} == {original["order_id"]}
    refunds = [
        e for r in bodies["ga4.ga4.jsonl"] for e in r["body"]["events"] if e["name"] == "refund"
    ]
    assert refunds == []


def test_interrupted_batch_is_resent_only_where_the_platform_dedupes(
    engine: Engine, tmp_path: Path
) -> None:
    config = one_won_deal(engine, tmp_path)
    run(engine, config)
    # Simulate a crash between "mark sending" and the answer.
    with engine.begin() as conn:
        conn.execute(update(conversions).values(state="sending"))
    run(engine, config, NOW + timedelta(hours=1))
    with engine.connect() as conn:
        states = dict(conn.execute(select(conversions.c.destination, conversions.c.state)).all())
    assert states == {"gads": "sent", "meta": "sent", "ga4": "unknown"}
    bodies = requests_in(tmp_path / "out")
    assert len(bodies["gads.google_ads.jsonl"]) == 2  # resent with the same order_id
    assert len(bodies["ga4.ga4.jsonl"]) == 1  # never silently sent twice


def test_an_overlapping_run_leaves_a_live_runs_destination_alone_until_its_lease_expires(
    engine: Engine, tmp_path: Path
) -> None:
    config = one_won_deal(engine, tmp_path)
    # Another run is uploading to GA4: it holds the destination for ten minutes.
    other = Lease(engine, "destination:ga4", "run 99 on elsewhere (pid 7)",
                  timedelta(minutes=10), lambda: NOW)  # fmt: skip
    assert other.take() is None

    first = run(engine, config)
    assert first.status == "ok" and dict(first.planned) == {"gads": 1, "ga4": 1, "meta": 1}
    assert first.warnings == [
        "destination:ga4: skipped, another run is at it "
        "(run 99 on elsewhere (pid 7), until 2026-11-20 12:10:00 UTC)"
    ]
    assert "ga4.ga4.jsonl" not in requests_in(tmp_path / "out")

    def ga4_state() -> str:
        with engine.connect() as conn:
            return str(conn.execute(
                select(conversions.c.state).where(conversions.c.destination == "ga4")
            ).scalar_one())  # fmt: skip

    assert ga4_state() == "planned"
    # The other run claims the row and is sending it: a run now must not touch it (it
    # would otherwise count as a crash leftover and be held as unknown, or be sent again).
    with engine.begin() as conn:
        conn.execute(update(conversions).where(conversions.c.destination == "ga4")
                     .values(state="sending"))  # fmt: skip
    second = run(engine, config, NOW + timedelta(minutes=5))
    assert ga4_state() == "sending" and len(second.warnings) == 1
    # The other run died: once its lease has expired, the row is an interrupted send.
    third = run(engine, config, NOW + timedelta(minutes=10))
    assert ga4_state() == "unknown" and third.status == "partial"  # said, not hidden
    assert [w.split(":")[0] for w in third.warnings] == ["ga4"] and "1 unknown" in third.warnings[0]
    assert "ga4.ga4.jsonl" not in requests_in(tmp_path / "out")  # never sent twice
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(leases)).scalar_one() == 0


def test_a_source_another_run_is_reading_is_skipped(engine: Engine, tmp_path: Path) -> None:
    config = one_won_deal(engine, tmp_path)
    other = Lease(engine, "source:crm", "run 99 on elsewhere (pid 7)", timedelta(minutes=10),
                  lambda: NOW)  # fmt: skip
    assert other.take() is None
    skipped = run(engine, config)
    assert (dict(skipped.deals_read), sum(skipped.planned.values())) == ({}, 0)
    assert skipped.warnings[0].startswith("source:crm: skipped, another run is at it (run 99")
    other.drop()
    read = run(engine, config, NOW + timedelta(minutes=1))
    assert dict(read.deals_read) == {"crm": 1} and read.warnings == []


def test_a_stop_request_ends_the_run_after_the_page_in_progress(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("revsync.sources.files.PAGE_SIZE", 1)
    config = scenario(engine, tmp_path)
    write_deals(tmp_path / "deals.csv", [
        {"deal_id": f"D{n}", "status": "won", "amount": "1000", "currency": "USD",
         "close_date": "2026-11-18", "modified_at": f"2026-11-18T10:0{n}:00Z",
         "contact_id": "C1", "email": "ann@example.com"}
        for n in (1, 2, 3)
    ])  # fmt: skip
    stop = threading.Event()

    def signal_after_first_page(stage: str, done: int, _total: int | None) -> None:
        if stage == "read crm" and done == 1:
            stop.set()  # SIGTERM while the first page is being stored

    stopped = run(engine, config, progress=signal_after_first_page, stop=stop)
    assert (stopped.status, dict(stopped.deals_read), dict(stopped.results)) == (
        "stopped",
        {"crm": 1},
        {},
    )
    assert "stopped on request" in stopped.warnings[-1]
    with engine.connect() as conn:
        assert conn.execute(select(sync_state.c.watermark)).scalar_one() == (
            "2026-11-18T10:01:00+00:00"
        )
        assert conn.execute(select(func.count()).select_from(leases)).scalar_one() == 0
        assert conn.execute(select(func.count()).select_from(conversions)).scalar_one() == 3
    carried_on = run(engine, config, NOW + timedelta(minutes=1))
    assert carried_on.status == "ok" and carried_on.deals_read["crm"] == 3  # D1: the overlap
    assert {d: t["sent"] for d, t in carried_on.results.items()} == {"gads": 3, "ga4": 3, "meta": 3}


def test_missing_crm_export_is_a_config_error_recorded_on_the_run(
    engine: Engine, tmp_path: Path
) -> None:
    (tmp_path / "revsync.yaml").write_text(CONFIG)
    summary = run(engine, load_config(tmp_path / "revsync.yaml"))
    assert summary.status == "config_error"
    assert "deals.csv" in summary.failures[0]


def test_replan_picks_up_leads_imported_after_the_deal_was_synced(
    engine: Engine, tmp_path: Path
) -> None:
    (tmp_path / "revsync.yaml").write_text(CONFIG)
    config = load_config(tmp_path / "revsync.yaml")
    (tmp_path / "tp.csv").write_text(
        "visitor_id,occurred_at,landing_url,consent_ad_user_data\n"
        "v1,2026-11-10T09:00:00Z,https://x.com/?gclid=CjwLate0001,granted\n"
    )
    import_touchpoints(engine, tmp_path / "tp.csv")
    write_deals(tmp_path / "deals.csv", [
        {"deal_id": "D1", "status": "won", "amount": "900", "currency": "USD",
         "close_date": "2026-11-18", "modified_at": "2026-11-18T10:00:00Z",
         "contact_id": "C1", "email": "late@example.com"},
        {"deal_id": "D2", "status": "open", "amount": "5", "currency": "USD",
         "modified_at": "2026-11-19T10:00:00Z"},
    ])  # fmt: skip
    first = run(engine, config)
    assert sum(first.planned.values()) == 0  # nobody links the deal yet: skipped, and why
    assert first.skipped["gads: nothing credited to this platform's touchpoints"] == 1
    assert first.status == "ok"  # revsync's own decision does not make a run partial
    (tmp_path / "leads.csv").write_text(
        "visitor_id,observed_at,email\nv1,2026-11-10T09:05:00Z,late@example.com\n"
    )
    import_identities(engine, tmp_path / "leads.csv")
    assert sum(run(engine, config, NOW + timedelta(hours=1)).planned.values()) == 0
    replanned = run(engine, config, NOW + timedelta(hours=2), replan=True)
    # D1 is outside the overlap: only replan sees it (Meta, value_mode full, by hashed email;
    # GA4 has no client_id for it).
    assert dict(replanned.planned) == {"gads": 1, "meta": 1}


def test_quarantine_keeps_the_related_ids(engine: Engine, tmp_path: Path) -> None:
    config = scenario(engine, tmp_path)
    write_deals(tmp_path / "deals.csv", [
        {"deal_id": "D9", "status": "won", "amount": "10", "currency": "USD",
         "close_date": "2026-11-18", "modified_at": "2026-11-18T10:00:00Z",
         "contact_id": "C9", "email": "not-an-email"},
    ])  # fmt: skip
    run(engine, config)
    with engine.connect() as conn:
        row = conn.execute(select(quarantine)).mappings().one()
    assert (row["kind"], row["record_id"], row["field"]) == ("contact", "C9", "email")
    assert row["detail"] == {"row": 2}


def test_an_operator_settles_unknown_and_failed_rows(
    engine: Engine, tmp_path: Path, store_url: str
) -> None:
    from typer.testing import CliRunner

    from revsync.cli import app

    config = one_won_deal(engine, tmp_path)
    run(engine, config)
    with engine.begin() as conn:  # a crash mid-send, then a run: GA4's row is unknown
        conn.execute(update(conversions).values(state="sending"))
    run(engine, config, NOW + timedelta(hours=1))
    with engine.begin() as conn:  # and Meta's ran out of retries
        conn.execute(update(conversions).where(conversions.c.destination == "meta")
                     .values(state="failed", attempts=8, error_code="HTTP_503"))  # fmt: skip
    cli = CliRunner()
    where = ["--database-url", store_url]
    nowhere = cli.invoke(
        app, ["ledger", "show", "--database-url", f"sqlite:///{tmp_path / 'x.db'}"]
    )
    assert nowhere.exit_code == 1 and "no store" in nowhere.output  # and none is created
    assert not (tmp_path / "x.db").exists()

    counts = json.loads(cli.invoke(app, ["ledger", "show", "--json", *where]).stdout)
    assert counts == {"gads": {"sent": 1}, "ga4": {"unknown": 1}, "meta": {"failed": 1}}
    [row] = json.loads(cli.invoke(app, ["ledger", "show", "--state", "failed", "--json",
                                        *where]).stdout)  # fmt: skip
    assert (row["destination"], row["deal_id"], row["error_code"]) == ("meta", "D1", "HTTP_503")

    dry = cli.invoke(app, ["ledger", "settle", "--destination", "ga4", "--state", "unknown",
                           "--as", "planned", *where])  # fmt: skip
    assert dry.exit_code == 0
    assert "would settle 1 unknown row(s) of ga4 as planned; add --yes" in dry.stdout
    assert "can count it twice" in dry.stdout
    # The operator checked GA4: the event arrived. Meta's cause is fixed: send it again.
    for args in (["ga4", "--state", "unknown", "--as", "sent"],
                 ["meta", "--state", "failed", "--as", "planned"]):  # fmt: skip
        done = cli.invoke(app, ["ledger", "settle", "--destination", *args, "--yes", *where])
        assert done.exit_code == 0 and "settled 1 " in done.stdout
    bad = cli.invoke(app, ["ledger", "settle", "--destination", "gads", "--state", "sent",
                           "--as", "planned", *where])  # fmt: skip
    assert bad.exit_code == 2 and "--state 'sent': one of failed, rejected, unknown" in bad.output
    wrong = cli.invoke(app, ["ledger", "settle", "--destination", "meta", "--state", "failed",
                             "--as", "sent", *where])  # fmt: skip
    assert wrong.exit_code == 2 and "--as 'sent': failed rows settle as planned" in wrong.output

    after = run(engine, config, NOW + timedelta(hours=2))
    assert {d: t.get("sent", 0) for d, t in after.results.items()} == {"meta": 1}
    assert len(requests_in(tmp_path / "out")["ga4.ga4.jsonl"]) == 1  # never sent again
    with engine.connect() as conn:
        states = dict(conn.execute(select(conversions.c.destination, conversions.c.state)).all())
    assert states == {"gads": "sent", "ga4": "sent", "meta": "sent"}


def test_an_unreachable_store_fails_the_run_without_raising(tmp_path: Path) -> None:
    from revsync.store.engine import create_store_engine

    (tmp_path / "revsync.yaml").write_text(CONFIG)
    config = load_config(tmp_path / "revsync.yaml")
    gone = create_store_engine("postgresql://revsync:s3cret@127.0.0.1:1/nowhere")
    try:
        summary = run(gone, config)  # what a worker's next tick meets during an outage
    finally:
        gone.dispose()
    assert (summary.status, summary.failures) == (
        "failed",
        ["the store is unreachable (OperationalError)"],
    )


class _SlowSource:
    """A CRM that keeps the run waiting before its first page (a Bulk job being prepared),
    then holds the page until ``release`` is set."""

    name = "crm"

    def __init__(self, inner: DealSource, waiting: threading.Event, release: threading.Event):
        self.inner, self.waiting, self.release = inner, waiting, release

    def pages(self, watermark: str | None, now: datetime) -> Iterator[DealPage]:
        self.waiting.set()
        assert self.release.wait(30)
        yield from self.inner.pages(watermark, now)

    def close(self) -> None:
        self.inner.close()


def test_a_run_keeps_its_lease_through_a_long_wait(engine: Engine, tmp_path: Path) -> None:
    # Leases expire in real time here, so the run and the deal's dates follow the real clock
    # (a deal fixed in time would age past Meta's 7-day window and be held back).
    config = one_won_deal(engine, tmp_path, datetime.now(UTC))
    settings, ttl = Settings(), timedelta(seconds=0.6)
    waiting, release = threading.Event(), threading.Event()
    slow = _SlowSource(build_sources(config, settings)[0], waiting, release)
    clock = lambda: datetime.now(UTC)  # noqa: E731
    job = SyncJob(engine, config, [slow], build_destinations(config, settings, clock),
                  clock=clock, lease_ttl=ttl)  # fmt: skip
    done: list[RunSummary] = []
    runner = threading.Thread(target=lambda: done.append(job.run()))
    runner.start()
    try:
        assert waiting.wait(30)
        time.sleep(3 * ttl.total_seconds())  # three times the time to live without a page
        other = Lease(engine, "source:crm", "run 99 on elsewhere (pid 7)", ttl, clock)
        assert other.take() is not None  # still held: the heartbeat renewed it
    finally:
        release.set()
        runner.join(60)
    [summary] = done
    assert summary.status == "ok" and summary.deals_read["crm"] == 1


def test_replan_leaves_the_deals_of_a_source_another_run_holds(
    engine: Engine, tmp_path: Path
) -> None:
    config = one_won_deal(engine, tmp_path)
    assert sum(run(engine, config).planned.values()) == 3
    with engine.begin() as conn:  # plans to be made again, as after a late import
        conn.execute(conversions.delete())
    other = Lease(engine, "source:crm", "run 99 on elsewhere (pid 7)", timedelta(minutes=10),
                  lambda: NOW)  # fmt: skip
    assert other.take() is None
    assert sum(run(engine, config, NOW + timedelta(minutes=1), replan=True).planned.values()) == 0
    other.drop()
    assert sum(run(engine, config, NOW + timedelta(minutes=2), replan=True).planned.values()) == 3
