"""The whole loop as a user runs it, timed step by step in separate ``revsync`` processes.

    PYTHONPATH=src:. .venv/bin/python -m bench.loop --deals 1000 --store sqlite|postgresql|both

Writes ``n`` won deals with their touchpoints and leads as files (``bench.loop_data``: a
file CRM source, file destinations: no network), then runs ``import touchpoints``,
``import identities``, the first ``sync``, a second ``sync`` (the same export: nothing new)
and a third over an export with no rows (a source with nothing new, as an API source past
its watermark) as ``python -m revsync`` child processes. For each step it prints wall time,
CPU (user + system of the child, from ``wait4``; a PostgreSQL server's CPU is not in it),
peak RSS of the child and rows per CPU-second; after the first sync, the requests per 1,000
conversions of each destination beside that destination's floor, and the first sync's CPU
beside ``bench.attribution``'s engine on the same store.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa

from bench.loop_data import LoopFiles, generate
from revsync.domain import Conversion

PG_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
DEFAULT_DIR = Path("/tmp/revsync-bench/loop")
# Events per request: Google's UploadClickConversions and Meta's Conversions API.
PER_REQUEST = {"google_ads": 2_000, "meta": 1_000, "ga4": 25}


@dataclass
class Step:
    name: str
    rows: int
    wall: float
    cpu: float
    rss_mib: float
    code: int


SRC = Path(__file__).resolve().parents[1] / "src"


def _run(name: str, args: list[str], rows: int, cwd: Path, log: Path) -> Step:
    """One ``python -m revsync`` child: its wall time and, from ``wait4``, its CPU and peak
    RSS (``ru_maxrss`` is KiB on Linux)."""
    src = SRC
    path = os.pathsep.join([str(src), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "PYTHONPATH": path}
    # As an installed package runs: its bytecode cached, not compiled again by every step.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    started = time.perf_counter()
    with log.open("ab") as out:
        # A checkout without ``revsync/__main__.py`` (code from before it) runs the app.
        entry = ["-m", "revsync"] if (src / "revsync" / "__main__.py").exists() else [
            "-c", "from revsync.cli import app; app(prog_name='revsync')"]  # fmt: skip
        child = subprocess.Popen([sys.executable, *entry, *args], cwd=cwd, env=env,
                                 stdout=out, stderr=out)  # fmt: skip
        _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - started
    child.returncode = os.waitstatus_to_exitcode(status)
    cpu = usage.ru_utime + usage.ru_stime
    return Step(name, rows, wall, cpu, usage.ru_maxrss / 1024, child.returncode)


def _store_url(store: str, directory: Path, deals: int) -> str:
    if store == "sqlite":
        path = directory / f"loop-{deals}.db"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        return f"sqlite:///{path}"
    name = f"revsync_loop_{deals}"
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        conn.execute(sa.text(f"CREATE DATABASE {name}"))
    admin.dispose()
    return PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"


def attribution_cpu(url: str, figures: Path, log: Path) -> float:
    """The CPU seconds ``bench.attribution``'s engine (match, attribute, details of every
    won deal, one process) takes on this store: the yardstick for the first sync."""
    path = os.pathsep.join([str(SRC), str(SRC.parent), os.environ.get("PYTHONPATH", "")])
    with log.open("ab") as out:
        subprocess.run([sys.executable, "-m", "bench.attribution", "--url", url,
                        "--json", str(figures)], env={**os.environ, "PYTHONPATH": path},
                       stdout=out, stderr=out, check=True)  # fmt: skip
    return float(json.loads(figures.read_text())["engine_cpu_seconds"])


def floors(url: str) -> dict[str, tuple[str, int]]:
    """Per destination: its platform and the fewest requests that carry its sent rows.

    Google and Meta: rows / events per request, rounded up. GA4: user data and consent are
    request-level, so each (client_id, person, consent) group needs ceil(rows / 25)."""
    engine = sa.create_engine(url)
    groups: dict[str, Counter[tuple[object, ...]]] = {}
    platforms: dict[str, str] = {}
    query = sa.text("SELECT destination, platform, payload FROM conversions WHERE state = 'sent'")
    with engine.connect() as conn:
        for destination, platform, payload in conn.execute(query):
            platforms[destination] = platform
            c = Conversion.from_json(payload)
            key: tuple[object, ...] = ()
            if platform == "ga4":
                email = c.person.email_ga4 or c.person.email_google
                key = (c.click_ids.ga_client_id, email, c.person.phone, c.consent)
            groups.setdefault(destination, Counter())[key] += 1
    engine.dispose()
    return {
        name: (platforms[name], sum(math.ceil(n / PER_REQUEST[platforms[name]])
                                    for n in counter.values()))
        for name, counter in groups.items()
    }  # fmt: skip


def requests_made(out: Path) -> dict[str, tuple[int, int]]:
    """Per destination file: (requests, events) written by the file transports."""
    made = {}
    for path in sorted(out.glob("*.jsonl")):
        requests = events = 0
        with path.open(encoding="utf-8") as lines:
            for line in lines:
                body = json.loads(line)["body"]
                requests += 1
                events += len(body.get("events") or body.get("data") or body.get("conversions")
                              or body.get("conversionAdjustments") or [])  # fmt: skip
        made[path.name.split(".")[0]] = (requests, events)
    return made


def run(store: str, files: LoopFiles, deals: int, directory: Path) -> list[Step]:
    url = _store_url(store, directory, deals)
    out = files.config.parent / "out"
    for path in out.glob("*.jsonl"):
        path.unlink()
    log = directory / f"loop-{store}-{deals}.log"
    log.unlink(missing_ok=True)
    where = ["--config", str(files.config), "--database-url", url]
    cwd = files.config.parent
    run_sync = ["sync", *where]
    steps = [
        _run("import touchpoints", ["import", "touchpoints", str(files.touchpoints), *where],
             files.counts["touchpoints"], cwd, log),
        _run("import identities", ["import", "identities", str(files.leads), *where],
             files.counts["leads"], cwd, log),
        _run("first sync", run_sync, files.counts["deal rows"], cwd, log),
    ]  # fmt: skip
    made = requests_made(out)
    floor = floors(url)
    engine_cpu = attribution_cpu(url, directory / f"attribution-{store}-{deals}.json", log)
    steps.append(_run("second sync", run_sync, files.counts["deal rows"], cwd, log))
    quiet = ["sync", "--config", str(files.quiet_config), "--database-url", url]
    steps.append(_run("sync, source with nothing new", quiet, 0, cwd, log))
    print(f"\n{store}, {deals:,} won deals (log: {log})")
    print("| step | rows | wall s | CPU s | peak RSS MiB | rows/CPU-s | exit |")
    print("|---|---|---|---|---|---|---|")
    for s in steps:
        print(f"| {s.name} | {s.rows:,} | {s.wall:.1f} | {s.cpu:.1f} | {s.rss_mib:.0f} | "
              f"{s.rows / max(s.cpu, 1e-9):,.0f} | {s.code} |")  # fmt: skip
    print("\n| destination | conversions sent | requests | per 1,000 | floor | floor per 1,000 |")
    print("|---|---|---|---|---|---|")
    for name, (platform, least) in sorted(floor.items()):
        requests, events = made.get(name, (0, 0))
        per = 1000 * requests / max(events, 1)
        print(f"| {name} ({platform}) | {events:,} | {requests:,} | {per:.1f} | {least:,} | "
              f"{1000 * least / max(events, 1):.1f} |")  # fmt: skip
    first = next(s for s in steps if s.name == "first sync")
    print(f"\nfirst sync CPU / bench.attribution engine CPU on this store: {first.cpu:.1f} s / "
          f"{engine_cpu:.1f} s = {first.cpu / max(engine_cpu, 1e-9):.2f}x (target <= 3x)")
    again = requests_made(out)
    if again != made:
        print(f"second sync sent more: {again} (was {made})")
    return steps


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--deals", type=int, default=1_000)
    parser.add_argument("--store", choices=("sqlite", "postgresql", "both"), default="sqlite")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR)
    parser.add_argument("--src", type=Path, default=SRC,
                        help="The revsync code to time (another checkout's src: before/after).")
    args = parser.parse_args(argv)
    globals()["SRC"] = args.src.resolve()
    data = args.dir / f"data-{args.deals}-s{args.seed}"
    started = time.perf_counter()
    files = generate(data, args.deals, args.seed, datetime.now(UTC))
    print(f"generated {files.counts} in {time.perf_counter() - started:.1f} s under {data}")
    for store in ("sqlite", "postgresql") if args.store == "both" else (args.store,):
        run(store, files, args.deals, args.dir)


if __name__ == "__main__":
    main()
