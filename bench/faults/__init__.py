"""Fault injection: whole ``revsync`` loops against recording GA4 and Meta emulators (each
logs every event before it answers), with faults in the platforms' answers, SIGKILLs of
the ``revsync`` processes and a restart of the store's PostgreSQL server; then counts what
the platforms received.

Run from the repository root (one line; ``--json`` prints the rows as JSON)::

    PYTHONPATH=src:. .venv/bin/python -m bench.faults --trials 210 --seed 1

Each trial builds a fresh store (SQLite file or a new PostgreSQL database, alternately;
``--store`` picks one) from the demo generator (``--visitors`` visitors for the answer
faults, ``--process-visitors`` for the process faults; won deals closed in the last days,
so Meta takes them), injects its fault, then completes the work the way
an operator would: syncs again until nothing is due, settles each GA4 ``unknown`` row by
the emulator's own log (sent if GA4 holds its transaction_id, else planned) and syncs once
more. Fault kinds:

* ``ga4-5xx-after``: GA4 records the events, then answers 503.
* ``ga4-timeout-after``: GA4 records the events, then answers after the client's timeout.
* ``ga4-reset-after``: GA4 records the events, then resets the connection.
* ``ga4-429``: GA4 refuses with 429 before processing (safe to retry).
* ``meta-5xx-after``: Meta records the events, then answers 500 (Meta deduplicates).
* ``sigkill``: ``revsync import``/``sync`` processes on a fresh store killed 1-4 times at
  random moments (migrations, imports, uploads in flight), then run to completion.
* ``pg-restart``: the PostgreSQL server restarted under a running ``revsync sync`` (a
  cluster of the bench's own on a free port; always PostgreSQL).
* ``3-workers``: three ``revsync worker --every 1s`` processes on one PostgreSQL store with
  GA4 slowed down, stopped by SIGTERM once nothing is left to send.

Printed per kind and store: trials, effective kills (or restarts), conversions expected,
received, lost, doubled at GA4 and at Google, re-sent at Meta (deduplicated there by
event_id), rows stuck (not sent after completion), rows the platform refused for their
data (not expected: Google refuses a click outside the action's window, faults or not),
GA4 ``unknown`` rows settled from the log, workers that sent something, restarts that
failed (an exit other than ok/partial, or a traceback; a worker
that did not exit 0 on SIGTERM).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from bench.faults import answers, processes
from bench.faults.world import COLUMNS, Trial, as_row

KINDS = (*answers.FAULTS, "sigkill", "pg-restart", "3-workers")
STORES = ("sqlite", "postgresql")


def schedule(
    trials: int, kinds: tuple[str, ...], stores: tuple[str, ...]
) -> Iterator[tuple[str, str]]:
    """Kinds in turn; each kind alternates its stores (``pg-restart`` is PostgreSQL only)."""
    for n in range(trials):
        kind = kinds[n % len(kinds)]
        only_postgresql = kind in ("pg-restart", "3-workers")
        yield kind, "postgresql" if only_postgresql else stores[n // len(kinds) % len(stores)]


def run_trial(kind: str, store: str, seed: int, args: argparse.Namespace, cluster: Any) -> Trial:
    with tempfile.TemporaryDirectory() as workdir:
        if kind == "sigkill":
            return processes.run_kills(store, seed, args.process_visitors, Path(workdir))
        if kind == "pg-restart":
            return processes.run_pg_restart(cluster, seed, args.process_visitors, Path(workdir))
        if kind == "3-workers":
            return processes.run_workers(seed, args.process_visitors, Path(workdir))
        return answers.run(kind, store, seed, args.visitors, Path(workdir))


def main(argv: list[str] | None = None, out: Callable[[str], None] = print) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=42)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--visitors", type=int, default=150)
    parser.add_argument("--process-visitors", type=int, default=1500)
    parser.add_argument("--store", choices=(*STORES, "both"), default="both")
    parser.add_argument("--kinds", default=",".join(KINDS), help="comma-separated subset")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    kinds = tuple(k for k in args.kinds.split(",") if k)
    if unknown := set(kinds) - set(KINDS):
        parser.error(f"unknown fault kinds: {', '.join(sorted(unknown))}")
    stores = STORES if args.store == "both" else (args.store,)
    totals: dict[tuple[str, str], Counter[str]] = {}
    notes: list[str] = []
    with ExitStack() as stack:
        cluster = stack.enter_context(processes.cluster()) if "pg-restart" in kinds else None
        for n, (kind, store) in enumerate(schedule(args.trials, kinds, stores)):
            trial = run_trial(kind, store, args.seed * 1000 + n, args, cluster)
            row = as_row(trial)
            totals.setdefault((kind, store), Counter()).update(
                {k: v for k, v in row.items() if k not in ("kind", "store")} | {"trials": 1}
            )
            notes += [f"{kind}/{store} trial {n}: {note}" for note in trial.notes]
    rows = [{"kind": kind, "store": store, **dict(t)} for (kind, store), t in totals.items()]
    if args.json:
        out(json.dumps({"rows": rows, "notes": notes}, indent=2))
    else:
        out(" | ".join(COLUMNS))
        for row in rows:
            out(" | ".join(str(row.get(c, 0)) for c in COLUMNS))
        out(" | ".join(["total", "", *(str(sum(r.get(c, 0) for r in rows)) for c in COLUMNS[2:])]))
        for note in notes:
            out(note)
    for row in rows:
        row["notes"] = [n for n in notes if n.startswith(f"{row['kind']}/{row['store']} ")]
    return rows
