"""Micro-benchmark of ``store.queries.upsert``: rows per CPU-second of this process.

    python -m bench.store_writes --rows 50000 --store sqlite|postgresql|both

Upserts ``--rows`` touchpoint rows (with their visitors) into a fresh store in chunks of
``--chunk`` rows, one transaction per chunk as the importer does, then the same rows again
(every one a conflict: the ``do nothing`` path), then ``--rows`` credits rows with an
``update`` list. CPU is this process's (``time.process_time``): the PostgreSQL server's
share is not in it, the wall time is.
"""

from __future__ import annotations

import argparse
import hashlib
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from revsync.store.engine import open_store
from revsync.store.queries import upsert
from revsync.store.schema import credits, touchpoints, visitors

PG_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
PG_DATABASE = "revsync_bench_writes"
NOW = datetime(2026, 11, 1, tzinfo=UTC)


def _touchpoints(n: int) -> list[dict[str, Any]]:
    rows = []
    for i in range(n):
        rows.append({
            "id": hashlib.sha1(str(i).encode()).hexdigest(), "visitor_id": f"v{i // 10:09d}",
            "occurred_at": NOW - timedelta(seconds=i), "channel": "Paid Search",
            "source": "google", "medium": "cpc", "campaign": "brand", "term": None,
            "content": None, "landing_url": "https://www.example-saas.com/pricing?gclid=x",
            "referrer": None, "gclid": f"g{i}", "gbraid": None, "wbraid": None, "fbclid": None,
            "fbc": None, "fbp": None, "ga_client_id": f"{i // 10}.1700000000", "msclkid": None,
            "ttclid": None, "li_fat_id": None, "consent_ad_user_data": True,
            "consent_ad_personalization": True, "user_agent": "Mozilla/5.0", "ip": "203.0.113.1",
        })  # fmt: skip
    return rows


def _visitors(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return list({
        r["visitor_id"]: {"id": r["visitor_id"], "first_seen": r["occurred_at"],
                          "last_seen": r["occurred_at"], "ga_client_id": r["ga_client_id"],
                          "fbp": None}
        for r in rows
    }.values())  # fmt: skip


def _credits(n: int) -> list[dict[str, Any]]:
    return [
        {"source": "crm", "deal_id": f"D{i // 4:09d}", "model": "last_non_direct",
         "touchpoint_id": hashlib.sha1(str(i).encode()).hexdigest(), "weight": "1/4",
         "amount": Decimal("12.34"), "currency": "USD", "channel": "Paid Search"}
        for i in range(n)
    ]  # fmt: skip


def _url(store: str, directory: Path) -> str:
    if store == "sqlite":
        path = directory / "store-writes.db"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        return f"sqlite:///{path}"
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f"DROP DATABASE IF EXISTS {PG_DATABASE}"))
        conn.execute(sa.text(f"CREATE DATABASE {PG_DATABASE}"))
    admin.dispose()
    return PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{PG_DATABASE}"


def _timed(label: str, rows: int, work: Callable[[], None]) -> None:
    wall, cpu = time.perf_counter(), time.process_time()
    work()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(f"  {label:<28} {rows:>8,} rows  wall {wall:6.2f} s  CPU {cpu:6.2f} s  "
          f"{rows / max(cpu, 1e-9):>9,.0f} rows/CPU-s")  # fmt: skip


def run(store: str, n: int, chunk: int, directory: Path) -> None:
    engine = open_store(_url(store, directory))
    tps, credit_rows = _touchpoints(n), _credits(n)
    print(f"{store}: {n:,} rows, chunks of {chunk:,}")

    def load(rows: list[dict[str, Any]]) -> Callable[[], None]:
        def work() -> None:
            for start in range(0, len(rows), chunk):
                part = rows[start : start + chunk]
                with engine.begin() as conn:
                    upsert(conn, visitors, _visitors(part))
                    upsert(conn, touchpoints, part)
        return work

    def load_credits() -> None:
        for start in range(0, len(credit_rows), chunk):
            with engine.begin() as conn:
                upsert(conn, credits, credit_rows[start : start + chunk],
                       update=("weight", "amount", "channel"))  # fmt: skip

    _timed("touchpoints, new", n, load(tps))
    _timed("touchpoints, all conflicts", n, load(tps))
    _timed("credits, with update", n, load_credits)
    with engine.connect() as conn:
        stored = conn.execute(sa.select(sa.func.count()).select_from(touchpoints)).scalar()
    assert stored == n, stored
    engine.dispose()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--chunk", type=int, default=5_000)
    parser.add_argument("--store", choices=("sqlite", "postgresql", "both"), default="sqlite")
    parser.add_argument("--dir", type=Path, default=Path("/tmp/revsync-bench"))
    args = parser.parse_args(argv)
    args.dir.mkdir(parents=True, exist_ok=True)
    for store in ("sqlite", "postgresql") if args.store == "both" else (args.store,):
        run(store, args.rows, args.chunk, args.dir)


if __name__ == "__main__":
    main()
