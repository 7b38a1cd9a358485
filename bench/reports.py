"""``revsync report sources --by keyword`` over the ``bench.loop`` store, against the same
figures computed by one SQL statement in the same run.

    PYTHONPATH=src:. .venv/bin/python -m bench.reports --deals 100000 --store sqlite|postgresql|both
    PYTHONPATH=src:. .venv/bin/python -m bench.reports --url URL   # a store bench.loop built

Without ``--url`` it builds the store as ``bench.loop`` does (import touchpoints, import
identities, first sync, as ``revsync`` child processes). It then writes 90 days of spend
(a row per campaign and per keyword a day, the Google Ads keyword view's shape) and times,
best of ``--repeat``:

- the command, a ``python -m revsync report sources --by keyword --json`` child process
  (wall and CPU, interpreter start-up included);
- ``sources_report`` in this process (wall);
- the single statement: the report's own visit, lead, credit and spend aggregates joined
  into one ``UNION ALL`` query, fetched whole (wall): the database's share of the work.

Target: the report within 3x of the single statement.
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from bench.loop import DEFAULT_DIR, _run, _store_url
from bench.loop_data import CAMPAIGNS, KEYWORDS, generate
from revsync.reports import sources
from revsync.store.engine import open_store
from revsync.store.queries import analyze, upsert
from revsync.store.schema import spend

MODEL = "last_non_direct"


def build(store: str, deals: int, seed: int, directory: Path) -> str:
    """A ``bench.loop`` store with ``deals`` won deals, synced once; its URL."""
    files = generate(directory / f"data-{deals}-s{seed}", deals, seed, datetime.now(UTC))
    url = _store_url(store, directory, deals)
    where = ["--config", str(files.config), "--database-url", url]
    log = directory / f"reports-{store}-{deals}.log"
    cwd = files.config.parent
    for name, args, rows in (
        ("import touchpoints", ["import", "touchpoints", str(files.touchpoints)],
         files.counts["touchpoints"]),
        ("import identities", ["import", "identities", str(files.leads)], files.counts["leads"]),
        ("first sync", ["sync"], files.counts["deal rows"]),
    ):  # fmt: skip
        step = _run(name, [*args, *where], rows, cwd, log)
        print(f"  {name}: {step.wall:.1f} s (exit {step.code})")
    return url


def write_spend(url: str, seed: int, today: date) -> int:
    """90 days of USD spend: a row per campaign a day and per keyword a day."""
    rng = random.Random(seed)
    now = datetime.now(UTC)
    rows: list[dict[str, Any]] = []
    for back in range(90):
        day = today - timedelta(days=back)
        for n, keyword in enumerate(KEYWORDS):
            rows.append(_spend_row(day, CAMPAIGNS[n % len(CAMPAIGNS)], keyword.replace("+", " "),
                                   rng, now))  # fmt: skip
        for campaign in CAMPAIGNS:
            rows.append(_spend_row(day, campaign, "", rng, now))
    engine = open_store(url)
    with engine.begin() as conn:
        upsert(conn, spend, rows, update=("cost", "clicks", "impressions", "updated_at"))
        analyze(conn, [spend])
    engine.dispose()
    return len(rows)


def _spend_row(day: date, campaign: str, keyword: str, rng: random.Random,
               now: datetime) -> dict[str, Any]:  # fmt: skip
    clicks = rng.randint(5, 60) * (20 if not keyword else 1)
    return {"platform": "google_ads", "account": "1234567890", "day": day,
            "campaign": campaign, "ad_group": f"{campaign} – search" if keyword else "",
            "keyword": keyword, "campaign_id": None,
            "cost": Decimal(clicks * rng.uniform(2, 9)).quantize(Decimal("0.01")),
            "currency": "USD", "clicks": clicks, "impressions": clicks * 25,
            "updated_at": now}  # fmt: skip


def one_statement(by: sources.GroupBy) -> sa.CompoundSelect:
    """The report's aggregates as one statement: (part, key, label, amount, count)."""
    period = sources.Period()
    key = sources._key(by)
    visits = (
        sa.select(key, sa.literal(""), sa.literal(0), sa.func.count())
        .select_from(sources._clicked(sources.touchpoints))
        .group_by(key)
    )
    leads = sources._leads(by, period).subquery()
    credits = sources._credits(by, MODEL, period, None).subquery()
    customers = sources._new_customers(by, MODEL, period).subquery()
    spent = sources._spend(by, period, None).subquery()
    lc, cc, nc, sc = (list(q.c) for q in (leads, credits, customers, spent))
    parts = {
        "visits": visits,
        "leads": sa.select(lc[0], lc[1], sa.literal(0), lc[2]),
        "credits": sa.select(cc[0], cc[1] + "|" + cc[2], cc[3], cc[4]),
        "customers": sa.select(nc[0], nc[1], sa.literal(0), nc[2]),
        "spend": sa.select(sc[0], sc[1], sc[2], sa.literal(0)),
    }
    typed = []
    for part, query in parts.items():
        k, label, amount, count = (c for c in query.subquery().c)
        text, number = sa.String, sa.Numeric
        typed.append(sa.select(sa.literal(part), sa.cast(k, text), sa.cast(label, text),
                               sa.cast(amount, number), sa.cast(count, number)))  # fmt: skip
    return sa.union_all(*typed)


def best(repeat: int, work: Callable[[], object]) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return min(times)


def measure(url: str, repeat: int, directory: Path) -> None:
    engine = open_store(url)
    with engine.connect() as conn:
        counts = {t: conn.execute(sa.select(sa.func.count()).select_from(sa.table(t))).scalar()
                  for t in ("touchpoints", "identities", "deals", "credits", "spend")}  # fmt: skip
        single = best(repeat, lambda: conn.execute(one_statement("keyword")).all())
        report = best(repeat, lambda: sources.sources_report(conn, "keyword", MODEL))
        rows = len(sources.sources_report(conn, "keyword", MODEL).rows)
    engine.dispose()
    config = directory / "reports-bench.yaml"
    config.write_text("version: 1\nsources: [{name: crm, type: file, path: deals.csv}]\n")
    log = directory / "reports-cli.log"
    command = ["report", "sources", "--by", "keyword", "--json", "--config", str(config),
               "--database-url", url]  # fmt: skip
    cli = min((_run("report", command, rows, directory, log) for _ in range(repeat)),
              key=lambda s: s.wall)  # fmt: skip
    print(f"store {url.split('://')[0]}: {counts}, {rows:,} keywords in the report")
    print("| what | wall s | CPU s | x the single statement |")
    print("|---|---|---|---|")
    print(f"| one SQL statement (the report's aggregates) | {single:.2f} | | 1.00 |")
    print(f"| sources_report in process | {report:.2f} | | {report / single:.2f} |")
    print(f"| `revsync report sources --by keyword --json` | {cli.wall:.2f} | {cli.cpu:.2f} | "
          f"{cli.wall / single:.2f} |")  # fmt: skip
    print(
        f"target: the report within 3x of the single statement: "
        f"{'met' if report <= 3 * single else 'NOT met'} (in process)"
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--deals", type=int, default=10_000)
    parser.add_argument("--store", choices=("sqlite", "postgresql", "both"), default="sqlite")
    parser.add_argument("--url", help="An existing bench.loop store (skips building one).")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR)
    args = parser.parse_args(argv)
    args.dir.mkdir(parents=True, exist_ok=True)
    stores = ("sqlite", "postgresql") if args.store == "both" else (args.store,)
    urls = [args.url] if args.url else [build(s, args.deals, args.seed, args.dir) for s in stores]
    for url in urls:
        print(f"spend rows written: {write_spend(url, args.seed, datetime.now(UTC).date()):,}")
        measure(url, args.repeat, args.dir)


if __name__ == "__main__":
    main()
