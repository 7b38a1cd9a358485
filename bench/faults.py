"""Fault injection: whole syncs against recording GA4 and Meta emulators that misbehave
*after* processing a request, then count what the platforms received.

Run from the repository root (one line; ``--json`` prints the rows as JSON)::

    PYTHONPATH=src:. .venv/bin/python -m bench.faults --trials 40 --seed 1

Each trial builds a fresh SQLite store from the demo generator (``--visitors`` visitors,
won deals closed in the last days, so Meta takes them), picks a fault kind and a number of
faulty requests, and runs ``SyncJob`` in this process against the emulators (real
transports, real retries with short waits). Then it completes the work the way an
operator would: runs again until nothing is due, and settles each GA4 ``unknown`` row by
the emulator's own log (sent if GA4 holds its transaction_id, else planned, then one more
run; the later runs' clock is moved past the ledger's backoff). Fault kinds:

* ``ga4-5xx-after``: GA4 records the events, then answers 503.
* ``ga4-timeout-after``: GA4 records the events, then answers after the client's timeout.
* ``ga4-429``: GA4 refuses with 429 before processing (safe to retry).
* ``meta-5xx-after``: Meta records the events, then answers 500 (Meta deduplicates).

Printed per kind: trials, conversions expected, received, lost, doubled at GA4, re-sent at
Meta (deduplicated there by event_id), rows stuck (not sent after completion). SIGKILL
trials and a PostgreSQL restart are not in this bench yet.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from tests.emulators.ga4_mp import GA4MPEmulator
from tests.emulators.meta_graph import MetaGraphEmulator

from revsync.collect.importer import import_identities, import_touchpoints
from revsync.config.loader import load_config
from revsync.config.settings import Settings
from revsync.demo import generate
from revsync.destinations.retry import RetryPolicy
from revsync.store.engine import open_store
from revsync.store.schema import conversions
from revsync.sync import factory, ledger
from revsync.sync.job import SyncJob

KINDS = ("ga4-5xx-after", "ga4-timeout-after", "ga4-429", "meta-5xx-after")
MEASUREMENT_ID, API_SECRET, PIXEL, TOKEN = "G-FAULTS1", "mp-secret", "777", "meta-token"
TIMEOUT = 0.5


@dataclass
class Trial:
    kind: str
    expected: int = 0
    received: int = 0
    lost: int = 0
    doubled_ga4: int = 0
    resent_meta: int = 0
    stuck: int = 0


def mapping(ga4: GA4MPEmulator, meta: MetaGraphEmulator) -> str:
    return f"""
sources:
  - {{name: crm, type: file, path: deals.csv, timezone: America/New_York}}
matching: {{default_phone_region: US}}
attribution: {{model: linear}}
privacy: {{unknown_consent: grant}}
destinations:
  - {{name: ga4, type: ga4, transport: http, measurement_id: {MEASUREMENT_ID},
     base_url: "{ga4.url}", event_name: purchase, timeout_seconds: {TIMEOUT}}}
  - {{name: meta, type: meta, transport: api, pixel_id: "{PIXEL}", graph_url: "{meta.url}",
     timeout_seconds: {TIMEOUT}, value_mode: full}}
"""


def inject(kind: str, times: int, ga4: GA4MPEmulator, meta: MetaGraphEmulator) -> None:
    if kind == "ga4-5xx-after":
        ga4.process_then_fail(times, 503)
    elif kind == "ga4-timeout-after":
        ga4.process_then_stall(TIMEOUT + 0.3, times)
    elif kind == "ga4-429":
        ga4.fail_next(times, 429)
    else:
        meta.process_then_fail(times, 500)


def run_trial(kind: str, seed: int, visitors: int, workdir: Path) -> Trial:
    rng = random.Random(seed)
    now = datetime.now(UTC).replace(microsecond=0)
    files = generate(workdir, visitors=visitors, seed=seed, now=now)
    settings = Settings(ga4_api_secret=SecretStr(API_SECRET), meta_access_token=SecretStr(TOKEN))
    policy = RetryPolicy(attempts=3, initial_wait=0.01, max_wait=0.05, jitter=0.0)
    with (
        GA4MPEmulator(streams={MEASUREMENT_ID: API_SECRET}) as ga4,
        MetaGraphEmulator(tokens={TOKEN}, pixels={PIXEL}) as meta,
    ):
        (workdir / "revsync.yaml").write_text(mapping(ga4, meta))
        config = load_config(workdir / "revsync.yaml")
        engine = open_store(f"sqlite:///{workdir / 'revsync.db'}")
        import_touchpoints(engine, files.touchpoints)
        import_identities(engine, files.leads, "US")

        def sync(later: timedelta = timedelta(0)) -> None:
            clock = lambda: datetime.now(UTC) + later  # noqa: E731 - past the ledger's backoff
            destinations = factory.build_destinations(config, settings, clock)
            for destination in destinations:  # short in-process retries for the bench
                transport: Any = getattr(destination, "transport", None)
                if transport is not None and hasattr(transport, "_retry"):
                    transport._retry = policy
            sources = factory.build_sources(config, settings)
            SyncJob(engine, config, sources, destinations, clock=clock).run()

        inject(kind, rng.randint(1, 6), ga4, meta)
        sync()
        sync(timedelta(hours=1))  # later runs: what is due again is sent
        settle_by_log(engine, ga4)
        sync(timedelta(hours=3))
        trial = count(kind, engine, ga4, meta)
        engine.dispose()
    return trial


def settle_by_log(engine: Any, ga4: GA4MPEmulator) -> None:
    """The operator: a GA4 ``unknown`` row is sent if GA4 shows its transaction_id."""
    seen = {str(e.params.get("transaction_id")) for e in ga4.events + ga4.duplicates}
    now = datetime.now(UTC)
    with engine.begin() as conn:
        rows = conn.execute(
            conversions.select().where(conversions.c.state == ledger.State.UNKNOWN.value)
        ).mappings()
        for row in list(rows):
            target = ledger.State.SENT if row["key"] in seen else ledger.State.PLANNED
            ledger.settle(conn, row["destination"], ledger.State.UNKNOWN, target, now,
                          key=row["key"])  # fmt: skip


def count(kind: str, engine: Any, ga4: GA4MPEmulator, meta: MetaGraphEmulator) -> Trial:
    with engine.connect() as conn:
        rows = conn.execute(
            conversions.select().where(conversions.c.kind == "conversion",
                                       conversions.c.state != "skipped")
        ).mappings().all()  # fmt: skip
    expected = {r["key"]: r["destination"] for r in rows}
    ga4_ids = Counter(str(e.params.get("transaction_id")) for e in ga4.events + ga4.duplicates)
    meta_ids = Counter(str(e.data.get("event_id")) for e in meta.events + meta.duplicates)
    received = {k for k, d in expected.items() if (ga4_ids if d == "ga4" else meta_ids)[k]}
    return Trial(
        kind=kind,
        expected=len(expected),
        received=len(received),
        lost=len(expected) - len(received),
        doubled_ga4=sum(n - 1 for n in ga4_ids.values() if n > 1),
        resent_meta=len(meta.duplicates),
        stuck=sum(1 for r in rows if r["state"] != "sent"),
    )


def main(argv: list[str] | None = None, out: Callable[[str], None] = print) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--visitors", type=int, default=150)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    totals: dict[str, Counter[str]] = {kind: Counter() for kind in KINDS}
    for n in range(args.trials):
        kind = KINDS[n % len(KINDS)]
        with tempfile.TemporaryDirectory() as workdir:
            trial = run_trial(kind, args.seed * 1000 + n, args.visitors, Path(workdir))
        totals[kind].update({k: v for k, v in vars(trial).items() if k != "kind"})
        totals[kind]["trials"] += 1
    rows = [{"kind": kind, **dict(t)} for kind, t in totals.items()]
    if args.json:
        out(json.dumps(rows, indent=2))
    else:
        columns = ("kind", "trials", "expected", "received", "lost", "doubled_ga4",
                   "resent_meta", "stuck")  # fmt: skip
        out(" | ".join(columns))
        for row in rows:
            out(" | ".join(str(row.get(c, 0)) for c in columns))
    return rows


if __name__ == "__main__":
    main()
