"""Matching + attribution benchmark: the engine against the database's own floor.

    python -m bench.attribution --backend sqlite --deals 100000 [--keep]
    python -m bench.attribution --url STORE_URL     # an existing store (bench.loop uses it)

Generates the dataset with :mod:`bench.generate` (in a child process, so its memory does
not count) unless it already exists, then measures

- **engine** (``--workers N``: spread over N processes as ``revsync report models
  --workers`` does, ``reports.parallel.map_won_deals``; default 1):
  what ``revsync report models`` and ``SyncJob._plan`` do for every won deal,
  with the default model: ``won_deal_pages`` (deals read back a page at a time) ->
  ``resolve_journeys`` -> ``attribute(journey, last_non_direct)`` -> ``with_details`` of
  the credited touchpoints (what planning reads). Uploading, storing links/credits and
  planning conversions are not counted.
- **floor**: one SQL statement that does the database side of the same work: won deals ->
  deal_contacts -> contacts -> identities (by email hash, phone hash or CRM ID) ->
  touchpoints of the matched visitors inside each deal's window ``[min(first lead, close)
  - 90 days, close]``, aggregated to one row (``FLOOR_SQL`` below is printed with
  ``--show-sql``). It reads every touchpoint row a journey holds (``sum(length(channel))``
  forces the table, not just the index). It runs in a child process on a connection of
  its own, before and after the engine; the faster run counts, so the engine never gets
  a warmer cache than the floor. ``--rows-floor`` also times it returning each journey
  touchpoint's row through the driver (the database's part plus the driver's).

Prints wall time, peak RSS of the engine (``resource.getrusage`` of this process, which
runs nothing else), deals/s, the floor and the ratio; ``--json`` also writes them to a
file. Without ``--keep`` the dataset is removed afterwards.
"""

from __future__ import annotations

import argparse
import gc
import json
import multiprocessing
import resource
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection

from bench.generate import DEFAULT_DIR, PG_ADMIN_URL, pg_database, pg_url, sqlite_path
from revsync.attribution import attribute, build_model
from revsync.config.mapping import AttributionConfig, MatchingConfig
from revsync.domain import Deal
from revsync.matching.resolve import resolve_journeys, with_details
from revsync.reports.parallel import map_won_deals
from revsync.store.engine import create_store_engine

_LINKS = """
    SELECT dc.source, dc.deal_id, i.visitor_id, i.observed_at
    FROM deals d
    JOIN deal_contacts dc ON dc.source = d.source AND dc.deal_id = d.id
    JOIN contacts c ON c.source = dc.source AND c.crm_id = dc.contact_id
    JOIN identities i ON {join}
    WHERE d.status = 'won' AND d.close_at IS NOT NULL"""
FLOOR_SQL = f"""
WITH links AS ({_LINKS.format(join="i.email_sha256 = c.email_sha256")}
    UNION ALL{_LINKS.format(join="i.phone_sha256 = c.phone_sha256")}
    UNION ALL{_LINKS.format(join="i.crm_id = c.crm_id")}
),
matched AS (
    SELECT source, deal_id, visitor_id, min(observed_at) AS first_lead
    FROM links GROUP BY source, deal_id, visitor_id
),
windows AS (
    SELECT m.source, m.deal_id, m.visitor_id, d.close_at,
           min(m.first_lead) OVER (PARTITION BY m.source, m.deal_id) AS first_lead
    FROM matched m JOIN deals d ON d.source = m.source AND d.id = m.deal_id
)
SELECT {{select}}
FROM windows w
JOIN touchpoints t ON t.visitor_id = w.visitor_id
 AND t.occurred_at >= {{start}}
 AND t.occurred_at <= w.close_at
"""
_START = {
    "sqlite": "datetime(min(w.first_lead, w.close_at), '-90 days')",
    "postgresql": "LEAST(w.first_lead, w.close_at) - interval '90 days'",
}


_AGGREGATE = "count(*) AS touchpoints, sum(length(t.channel)) AS channel_chars"
_ROWS = "w.source, w.deal_id, t.id, t.visitor_id, t.occurred_at, t.channel"


def floor_sql(dialect: str, rows: bool = False) -> str:
    """The floor statement; with ``rows``, returning each journey touchpoint's row (what
    a journey needs of it) instead of one aggregate row."""
    return FLOOR_SQL.format(start=_START[dialect], select=_ROWS if rows else _AGGREGATE)


@dataclass
class Result:
    backend: str
    deals: int
    won_deals: int = 0
    journeys_with_touchpoints: int = 0
    journey_touchpoints: int = 0
    credited: str = "0"
    engine_seconds: float = 0.0
    engine_cpu_seconds: float = 0.0  # this process's CPU (one worker: all of the engine)
    load_seconds: float = 0.0
    resolve_seconds: float = 0.0
    attribute_seconds: float = 0.0
    details_seconds: float = 0.0
    deals_per_second: float = 0.0
    rss_before_mib: float = 0.0
    peak_rss_mib: float = 0.0
    floor_seconds: list[float] = field(default_factory=list)
    floor_touchpoints: int = 0
    ratio: float = 0.0
    rows_floor_seconds: float | None = None
    generate_seconds: float | None = None
    workers: int = 1


def _maxrss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _exists(backend: str, deals: int, seed: int, directory: Path) -> bool:
    if backend == "sqlite":
        return sqlite_path(directory, deals, seed).exists()
    admin = sa.create_engine(PG_ADMIN_URL)
    with admin.connect() as conn:
        found = conn.execute(
            sa.text("SELECT 1 FROM pg_database WHERE datname = :name"),
            {"name": pg_database(deals, seed)},
        ).first()
    admin.dispose()
    return found is not None


def _drop(backend: str, deals: int, seed: int, directory: Path) -> None:
    if backend == "sqlite":
        path = sqlite_path(directory, deals, seed)
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        return
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{pg_database(deals, seed)}" WITH (FORCE)'))
    admin.dispose()


def run_floor(url: str, rows: bool = False) -> tuple[float, int]:
    """Seconds the floor statement takes on a fresh connection, and its touchpoint count.

    With ``rows`` it returns each row, read through the driver 10,000 at a time. Runs in a
    child process (see ``_in_child``), so the engine's peak RSS is its own."""
    engine = create_store_engine(url)
    try:
        started = time.perf_counter()
        with engine.connect() as conn:
            cursor = conn.connection.cursor()
            try:
                cursor.execute(floor_sql(engine.dialect.name, rows=rows))
                if rows:
                    count = 0
                    while batch := cursor.fetchmany(10_000):
                        count += len(batch)
                else:
                    count = int(cursor.fetchone()[0])
            finally:
                cursor.close()
        return time.perf_counter() - started, count
    finally:
        engine.dispose()


def _in_child(url: str, rows: bool = False) -> tuple[float, int]:
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(run_floor, url, rows).result()


def engine_range(conn: Connection, pages: Iterator[list[Deal]]) -> Result:
    """The engine over one range of won deals (all of them in one process): the figures
    of a :class:`Result` it fills, stage times included."""
    part = Result("", 0)
    matching = MatchingConfig()
    model = build_model(AttributionConfig().model)
    credited = Decimal(0)
    while True:
        t0 = time.perf_counter()
        page = next(pages, None)
        t1 = time.perf_counter()
        part.load_seconds += t1 - t0
        if page is None:
            break
        journeys = resolve_journeys(conn, page, matching.lookback_days, matching.keys)
        t2 = time.perf_counter()
        part.resolve_seconds += t2 - t1
        sent_ids = set()
        for journey in journeys:
            assert journey.deal.close_at is not None
            for credit in attribute(journey, model, journey.deal.close_at):
                credited += credit.amount
                sent_ids.add(credit.touchpoint_id)
            if journey.touchpoints:
                part.journeys_with_touchpoints += 1
                part.journey_touchpoints += len(journey.touchpoints)
        t3 = time.perf_counter()
        part.attribute_seconds += t3 - t2
        with_details(conn, journeys, sent_ids)
        part.details_seconds += time.perf_counter() - t3
        part.won_deals += len(page)
    part.credited = str(credited)
    part.peak_rss_mib = _maxrss_mib()
    return part


def run_engine(engine: sa.Engine, result: Result, page_size: int, workers: int = 1) -> None:
    """The engine over every won deal, in ``workers`` processes (``map_won_deals``, as
    ``revsync report models`` spreads its work); stage times are summed over them."""
    result.rss_before_mib = _maxrss_mib()
    started, cpu = time.perf_counter(), time.process_time()
    parts = map_won_deals(engine, engine_range, workers, page_size, min_deals=1)
    result.engine_seconds = time.perf_counter() - started
    result.engine_cpu_seconds = time.process_time() - cpu
    for part in parts:
        for name in ("load_seconds", "resolve_seconds", "attribute_seconds", "details_seconds",
                     "won_deals", "journeys_with_touchpoints", "journey_touchpoints"):  # fmt: skip
            setattr(result, name, getattr(result, name) + getattr(part, name))
    result.credited = str(sum(Decimal(part.credited) for part in parts))
    result.peak_rss_mib = max(_maxrss_mib(), *(part.peak_rss_mib for part in parts))
    result.deals_per_second = result.won_deals / result.engine_seconds
    result.workers = len(parts)


def main(argv: list[str] | None = None) -> Result:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--deals", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR, help="SQLite files go here")
    parser.add_argument("--page-size", type=int, default=1_000)
    parser.add_argument(
        "--workers", type=int, default=1, help="processes for the engine (default: 1)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the dataset afterwards")
    parser.add_argument("--regenerate", action="store_true", help="rebuild the dataset")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--show-sql", action="store_true", help="print the floor query")
    parser.add_argument(
        "--rows-floor",
        action="store_true",
        help="also time the floor query returning its rows through the driver",
    )
    parser.add_argument(
        "--url", help="time the engine on this existing store (not generated, never dropped)"
    )
    args = parser.parse_args(argv)
    result = Result(args.backend, args.deals)
    if args.show_sql:
        print(floor_sql(args.backend))
    if args.url:
        args.keep = True
        args.backend = sa.engine.make_url(args.url).get_backend_name()
        result.backend = args.backend
    elif args.regenerate or not _exists(args.backend, args.deals, args.seed, args.dir):
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "bench.generate", "--backend", args.backend,
             "--deals", str(args.deals), "--seed", str(args.seed), "--dir", str(args.dir)],
            check=True,
        )  # fmt: skip
        result.generate_seconds = round(time.perf_counter() - started, 1)
    url = args.url or (
        f"sqlite:///{sqlite_path(args.dir, args.deals, args.seed)}"
        if args.backend == "sqlite"
        else pg_url(args.deals, args.seed)
    )
    engine = create_store_engine(url)
    try:
        seconds, result.floor_touchpoints = _in_child(url)
        result.floor_seconds.append(seconds)
        print(f"floor (cold-ish): {seconds:.2f}s", flush=True)
        gc.freeze()  # as the revsync command does before it runs (cli.base._command)
        run_engine(engine, result, args.page_size, args.workers)
        gc.unfreeze()
        engine.dispose()
        result.floor_seconds.append(_in_child(url)[0])
        if args.rows_floor:
            result.rows_floor_seconds = _in_child(url, rows=True)[0]
    finally:
        engine.dispose()
        if not args.keep:
            _drop(args.backend, args.deals, args.seed, args.dir)
    result.ratio = result.engine_seconds / min(result.floor_seconds)
    _report(result)
    if args.json:
        args.json.write_text(json.dumps(asdict(result), indent=2))
    return result


def _report(r: Result) -> None:
    floor = min(r.floor_seconds)
    rows: list[tuple[str, Any]] = [
        ("backend", r.backend),
        ("deals (won)", f"{r.won_deals:,}"),
        ("journeys with touchpoints", f"{r.journeys_with_touchpoints:,}"),
        ("journey touchpoints (engine)", f"{r.journey_touchpoints:,}"),
        ("window touchpoints (floor)", f"{r.floor_touchpoints:,}"),
        ("credited (sum of amounts)", r.credited),
        ("engine wall", f"{r.engine_seconds:.2f}s ({r.workers} process(es))"),
        ("engine CPU", f"{r.engine_cpu_seconds:.2f}s (this process)"),
        ("  load deals", f"{r.load_seconds:.2f}s"),
        ("  resolve_journeys", f"{r.resolve_seconds:.2f}s"),
        ("  attribute", f"{r.attribute_seconds:.2f}s"),
        ("  with_details (credited)", f"{r.details_seconds:.2f}s"),
        ("deals/s", f"{r.deals_per_second:,.0f}"),
        ("peak RSS", f"{r.peak_rss_mib:.0f} MiB per process (before: {r.rss_before_mib:.0f} MiB)"),
        ("floor query", f"{floor:.2f}s (runs: {', '.join(f'{s:.2f}s' for s in r.floor_seconds)})"),
        ("engine / floor", f"{r.ratio:.2f}x"),
    ]
    if r.rows_floor_seconds is not None:
        rows.append(("floor returning rows", f"{r.rows_floor_seconds:.2f}s"))
    if r.generate_seconds is not None:
        rows.insert(1, ("generate", f"{r.generate_seconds:.1f}s"))
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")


if __name__ == "__main__":
    main()
