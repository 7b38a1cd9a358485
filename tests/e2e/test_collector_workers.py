"""``revsync serve --workers 2``: two processes share the port, SIGTERM under load loses
nothing answered 204, and a worker that dies is replaced."""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy import func, select

from revsync.store.engine import open_store
from revsync.store.schema import metadata, touchpoints
from tests.e2e.test_collector_process import ORIGIN, REVSYNC, UA, free_port, start, write_config


@pytest.fixture
def pg_url(postgres_url: str) -> str:
    engine = open_store(postgres_url)
    with engine.begin() as conn:
        tables = ", ".join(f'"{t.name}"' for t in metadata.sorted_tables)
        conn.execute(sa.text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    engine.dispose()
    return postgres_url


def workers_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        try:
            stat = (entry / "stat").read_text() if entry.name.isdigit() else ""
        except OSError:
            continue
        if stat and stat.rsplit(")", 1)[1].split()[1] == str(pid):
            found.append(int(entry.name))
    return sorted(found)


def connections_of(pid: int, port: int) -> int:
    """How many client connections to ``port`` the process holds."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local_port, state = int(fields[1].rsplit(":", 1)[1], 16), fields[3]
            if local_port == port and state == "01":  # established
                inodes.add(f"socket:[{fields[9]}]")
    held = 0
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            held += os.readlink(fd) in inodes
    return held


def wait_for_workers(pid: int, count: int, other_than: frozenset[int] = frozenset()) -> list[int]:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        found = workers_of(pid)
        if len(found) == count and not set(found) & other_than:
            return found
        time.sleep(0.05)
    raise AssertionError(f"workers of {pid}: {workers_of(pid)}")


@pytest.fixture
def served(tmp_path: Path, pg_url: str) -> Iterator[tuple[subprocess.Popen[str], int]]:
    port = free_port()
    config = write_config(tmp_path / "revsync.yaml", flush_ms=30)
    server = start(config, pg_url, port, "--workers", "2")
    try:
        yield server, port
    finally:
        server.kill()
        for pid in workers_of(server.pid):
            os.kill(pid, signal.SIGKILL)


def post(client: httpx.Client, port: int, vid: str) -> int:
    body = {"site": "site-main-01", "vid": vid, "url": f"https://www.example.com/?gclid=Cj0{vid}"}
    return client.post(f"http://127.0.0.1:{port}/v1/collect", content=json.dumps(body)).status_code


def test_two_workers_share_the_port_and_sigterm_loses_nothing_answered_204(
    served: tuple[subprocess.Popen[str], int], pg_url: str
) -> None:
    server, port = served
    workers = wait_for_workers(server.pid, 2)
    answered: list[int] = []
    stop = threading.Event()

    def load(worker: int) -> None:  # a keep-alive connection each: the kernel spreads them
        with httpx.Client(headers={"origin": ORIGIN, "user-agent": UA}, timeout=10) as client:
            for i in range(100_000):
                if stop.is_set():
                    return
                try:
                    if post(client, port, f"visitor-{worker:02d}-{i:06d}") == 204:
                        answered.append(1)
                except httpx.TransportError:
                    return  # the server went away

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        futures = [pool.submit(load, w) for w in range(16)]
        deadline = time.monotonic() + 60
        while len(answered) < 400 and time.monotonic() < deadline:
            time.sleep(0.05)
        held = {pid: connections_of(pid, port) for pid in workers}
        server.send_signal(signal.SIGTERM)
        _, errors = server.communicate(timeout=60)
        stop.set()
        for future in futures:
            future.result()
    assert all(held.values()), held  # the kernel spread the connections over both
    assert server.returncode == 0, errors
    assert errors.count("stopped, every answered event committed") == 2, errors
    assert "Traceback" not in errors and len(answered) >= 400
    assert workers_of(server.pid) == []
    engine = open_store(pg_url)
    with engine.connect() as conn:
        stored = conn.execute(select(func.count()).select_from(touchpoints)).scalar_one()
    engine.dispose()
    assert stored >= len(answered)  # a request cut off by the stop may be stored unanswered


def test_a_worker_that_dies_is_replaced(served: tuple[subprocess.Popen[str], int]) -> None:
    server, port = served
    first, second = wait_for_workers(server.pid, 2)
    os.kill(first, signal.SIGKILL)
    assert second in wait_for_workers(server.pid, 2, frozenset({first}))
    with httpx.Client(headers={"origin": ORIGIN, "user-agent": UA}, timeout=10) as client:
        assert [post(client, port, f"visitor-after-{i:04d}") for i in range(20)] == [204] * 20
    server.send_signal(signal.SIGTERM)
    _, errors = server.communicate(timeout=60)
    assert server.returncode == 0 and "starting another" in errors, errors


def test_workers_need_postgresql(tmp_path: Path) -> None:
    config = write_config(tmp_path / "revsync.yaml")
    done = subprocess.run(
        [REVSYNC, "serve", "--workers", "2", "-c", str(config), "--database-url",
         f"sqlite:///{tmp_path / 'store.db'}"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2 and "needs a PostgreSQL store" in done.stderr, done.stderr
