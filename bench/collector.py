"""Collector throughput and latency: ``revsync serve`` under load from a separate process.

    python -m bench.collector --backend sqlite --seconds 10
    python -m bench.collector --backend postgresql --seconds 10 --connections 64 --workers 2

The server runs as ``revsync serve`` (``--workers`` processes) on loopback; a second process
keeps ``--connections`` keep-alive HTTP/1.1 connections busy with session starts (each a
new visitor with a gclid) for ``--seconds``. Printed: events/s answered 204, latency p50 /
p99 / max, the server's CPU time per event (all its processes), batches and their commit
time (from ``/metrics``: one worker's), and afterwards — the server stopped with SIGTERM —
the touchpoint rows in the store, which must be at least the 204 count (nothing answered
204 lost). Also the snippet's minified and gzipped size.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

from revsync.collect.snippet import sizes
from revsync.store.engine import open_store

ORIGIN = "https://www.example.com"
PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def prepare_store(backend: str, directory: Path) -> str:
    if backend == "sqlite":
        path = directory / "collector.db"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        url = f"sqlite:///{path}"
    else:
        admin = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(sa.text('DROP DATABASE IF EXISTS "revsync_bench_collector" WITH (FORCE)'))
            conn.execute(sa.text('CREATE DATABASE "revsync_bench_collector"'))
        admin.dispose()
        url = PG_ADMIN.rsplit("/", 1)[0] + "/revsync_bench_collector"
    open_store(url).dispose()  # migrated before the server starts
    return url


# --- the load process --------------------------------------------------------------------


async def _connection(
    port: int, worker: int, until: float, latencies: list[float], statuses: dict[int, int],
    interval: float,
) -> None:
    """One keep-alive connection; with ``interval`` (open loop) a request is due every
    ``interval`` seconds and its latency counts from when it was due, so a slow server
    is not hidden by requests that were sent late (coordinated omission)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    i = 0
    due = time.perf_counter() + interval * (worker % 97) / 97  # spread the connections
    while time.perf_counter() < until:
        if interval:
            wait = due - time.perf_counter()
            if wait > 0:
                await asyncio.sleep(wait)
        body = json.dumps({
            "site": "bench-site-01", "vid": f"bench-{worker:04d}-{i:08d}",
            "url": f"https://www.example.com/pricing?gclid=Cj0KCQbench{worker}x{i}"
                   "&utm_source=google&utm_medium=cpc&utm_campaign=brand",
            "ref": "https://www.google.com/", "ga": "GA1.1.123456789.1700000000",
            "consent": {"ad_user_data": "granted", "ad_personalization": "granted"},
        }).encode()  # fmt: skip
        head = (
            f"POST /v1/collect HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nOrigin: {ORIGIN}\r\n"
            "User-Agent: Mozilla/5.0 (X11; Linux x86_64) Chrome/156.0 Safari/537.36\r\n"
            f"Content-Type: text/plain\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        started = due if interval else time.perf_counter()
        due += interval
        writer.write(head + body)
        headers = await reader.readuntil(b"\r\n\r\n")
        status = int(headers[9:12])
        length = re.search(rb"(?i)content-length: *(\d+)", headers)
        if length and int(length.group(1)):
            await reader.readexactly(int(length.group(1)))
        latencies.append(time.perf_counter() - started)
        statuses[status] = statuses.get(status, 0) + 1
        i += 1
    writer.close()


def _load(port: int, connections: int, seconds: float, rate: float, out: Any) -> None:
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    latencies: list[float] = []
    statuses: dict[int, int] = {}

    async def main() -> float:
        until = time.perf_counter() + seconds
        started = time.perf_counter()
        await asyncio.gather(
            *(
                _connection(port, w, until, latencies, statuses, connections / rate if rate else 0)
                for w in range(connections)
            )
        )
        return time.perf_counter() - started

    cpu = time.process_time()
    elapsed = asyncio.run(main())
    out.send((elapsed, statuses, latencies, time.process_time() - cpu))


# --- the run -----------------------------------------------------------------------------


def _stat(pid: int | str) -> list[str]:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def _cpu_ticks(chosen: Callable[[str, list[str]], bool]) -> dict[str, int]:
    """CPU ticks of each running process that ``chosen(pid, stat fields)``."""
    out = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = _stat(entry.name)
            if chosen(entry.name, fields):
                out[entry.name] = int(fields[11]) + int(fields[12])
        except OSError:  # a process that ended meanwhile
            continue
    return out


def _server_cpu(pid: int) -> dict[str, int]:
    """The server's CPU ticks and its workers'."""
    return _cpu_ticks(lambda name, fields: name == str(pid) or fields[1] == str(pid))


def _store_cpu(database: str) -> dict[str, int]:
    """The CPU ticks of PostgreSQL's backends serving ``database``."""
    return _cpu_ticks(lambda name, _: f" {database} ".encode() in _cmdline(name))


def _cmdline(pid: str) -> bytes:
    return Path(f"/proc/{pid}/cmdline").read_bytes()


def _seconds(before: dict[str, int], after: dict[str, int]) -> float:
    ticks = sum(value - before.get(pid, 0) for pid, value in after.items())
    return ticks / os.sysconf("SC_CLK_TCK")


def _metric(text: str, name: str) -> float:
    match = re.search(rf"^{re.escape(name)} ([0-9.e+]+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def _measure(
    server: subprocess.Popen[str], port: int, connections: int, seconds: float, rate: float,
    profile: Path | None, url: str,
) -> tuple[Any, ...]:
    """Load the server, then stop it with SIGTERM; the load's figures, the CPU seconds of
    the server and of the store's backends, the server's metrics and its stderr."""
    database = sa.engine.make_url(url).database or ""
    cpu_before, store_before = _server_cpu(server.pid), _store_cpu(database)
    ours, theirs = multiprocessing.Pipe()
    load = multiprocessing.get_context("spawn").Process(
        target=_load, args=(port, connections, seconds, rate, theirs)
    )
    load.start()
    spy = None
    if profile:  # py-spy's flat profile of the server while it is under load
        spy = subprocess.Popen(
            ["py-spy", "record", "--nonblocking", "--subprocesses", "--format", "raw",
             "--pid", str(server.pid),
             "--duration", str(int(seconds)), "--output", str(profile)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
    elapsed, statuses, latencies, load_cpu = ours.recv()
    if spy is not None:
        spy.wait()
    load.join()
    cpu = _seconds(cpu_before, _server_cpu(server.pid))
    store_cpu = _seconds(store_before, _store_cpu(database)) if url.startswith("postgres") else 0
    metrics = httpx.get(f"http://127.0.0.1:{port}/metrics").text
    server.send_signal(signal.SIGTERM)
    _, errors = server.communicate(timeout=60)
    return elapsed, statuses, latencies, load_cpu, cpu, store_cpu, metrics, errors


def run(
    backend: str,
    seconds: float,
    connections: int,
    directory: Path,
    rate: float = 0,
    profile: Path | None = None,
    workers: int = 1,
) -> dict[str, Any]:
    url = prepare_store(backend, directory)
    config = directory / f"collector-{backend}.yaml"
    config.write_text(json.dumps({"sources": [], "collector": {
        "sites": [{"key": "bench-site-01", "origins": [ORIGIN]}],
        "rate_per_minute": 100_000_000,
    }}))  # fmt: skip
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-c", "from revsync.cli import app; app()", "serve",
         "--port", str(port), "--workers", str(workers), "-c", str(config), "--database-url", url],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        start_new_session=True,  # its workers and it: one process group to kill on failure
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            if time.monotonic() > deadline:
                os.killpg(server.pid, signal.SIGKILL)
                raise SystemExit(server.communicate()[1]) from None
            time.sleep(0.05)
    try:
        measured = _measure(server, port, connections, seconds, rate, profile, url)
    finally:
        with contextlib.suppress(ProcessLookupError):  # nothing left running on a failure
            os.killpg(server.pid, signal.SIGKILL)
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT count(*) FROM touchpoints")).scalar_one()
    engine.dispose()
    elapsed, statuses, latencies, load_cpu, cpu, store_cpu, metrics, errors = measured
    ok = statuses.get(204, 0)
    latencies.sort()
    batches = _metric(metrics, "revsync_collector_write_seconds_count")
    written = _metric(metrics, 'revsync_collector_events_written_total{kind="touchpoint"}')
    return {
        "backend": backend, "workers": workers, "connections": connections,
        "offered_per_s": rate or "closed loop",
        "seconds": round(elapsed, 2),
        "answered_204": ok, "other_statuses": {k: v for k, v in statuses.items() if k != 204},
        "events_per_s": round(ok / elapsed),
        "p50_ms": round(statistics.median(latencies) * 1000, 2),
        "p99_ms": round(latencies[int(len(latencies) * 0.99)] * 1000, 2),
        "max_ms": round(latencies[-1] * 1000, 2),
        "server_cpu_us_per_event": round(cpu / max(ok, 1) * 1e6),
        "server_cpu_share": round(cpu / elapsed, 2),
        "store_cpu_us_per_event": round(store_cpu / max(ok, 1) * 1e6) if store_cpu else None,
        "load_cpu_share": round(load_cpu / elapsed, 2),
        # batches and commits: of the worker that answered GET /metrics (all, with one)
        "batches": int(batches), "events_per_batch": round(written / max(batches, 1), 1),
        "commit_ms_mean": round(
            _metric(metrics, "revsync_collector_write_seconds_sum") / max(batches, 1) * 1000, 2
        ),
        "rows_stored": rows, "lost": max(0, ok - rows), "server_exit": server.returncode,
        "server_errors": errors.strip()[-500:] if "Traceback" in errors else "",
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()) / "revsync-bench")
    parser.add_argument("--profile", type=Path, help="py-spy raw profile of the server here")
    parser.add_argument(
        "--workers", type=int, default=1, help="revsync serve --workers (PostgreSQL only)"
    )
    parser.add_argument(
        "--rate", type=float, default=0,
        help="offered events/s over all connections (open loop); 0: each connection sends "
        "its next request when the last is answered",
    )  # fmt: skip
    args = parser.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    minified, zipped = sizes()
    print(f"snippet: {minified:,} bytes minified, {zipped:,} bytes gzipped")
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    for backend in backends:
        profile = args.profile.with_suffix(f".{backend}.txt") if args.profile else None
        workers = args.workers if backend == "postgresql" else 1  # SQLite: one writer
        result = run(backend, args.seconds, args.connections, args.dir, args.rate, profile, workers)
        print(json.dumps(result))
        if result["lost"]:
            raise SystemExit(f"{backend}: {result['lost']} events answered 204 are not stored")


if __name__ == "__main__":
    main()
