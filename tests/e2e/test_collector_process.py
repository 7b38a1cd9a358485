"""``revsync serve`` as a process: SIGTERM under load loses nothing that was answered 204."""

from __future__ import annotations

import concurrent.futures
import json
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
from sqlalchemy import func, select

from revsync.store.engine import open_store
from revsync.store.schema import touchpoints

REVSYNC = str(Path(sys.executable).parent / "revsync")
ORIGIN = "https://www.example.com"
UA = "Mozilla/5.0 (X11; Linux x86_64) Chrome/156.0 Safari/537.36"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def write_config(path: Path, **collector: object) -> Path:
    config = {
        "sources": [],
        "collector": {
            "sites": [{"key": "site-main-01", "origins": [ORIGIN]}],
            "rate_per_minute": 1_000_000,
            **collector,
        },
    }
    path.write_text(json.dumps(config))  # JSON is YAML
    return path


def start(config: Path, url: str, port: int, *options: str) -> subprocess.Popen[str]:
    server = subprocess.Popen(
        [REVSYNC, "serve", "--port", str(port), "-c", str(config), "--database-url", url,
         *options],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return server
        except httpx.TransportError:
            time.sleep(0.05)
    server.kill()
    raise AssertionError(server.communicate()[1])


def test_sigterm_under_load_loses_nothing_answered_204(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    port = free_port()
    server = start(write_config(tmp_path / "revsync.yaml", flush_ms=30), url, port)
    answered: list[int] = []
    stop = threading.Event()

    def load(worker: int) -> None:
        with httpx.Client(headers={"origin": ORIGIN, "user-agent": UA}, timeout=10) as client:
            for i in range(10_000):
                if stop.is_set():
                    return
                body = {"site": "site-main-01", "vid": f"visitor-{worker}-{i:06d}",
                        "url": f"https://www.example.com/?gclid=Cj0KCQ{worker}x{i}"}  # fmt: skip
                try:
                    response = client.post(
                        f"http://127.0.0.1:{port}/v1/collect", content=json.dumps(body)
                    )
                except httpx.TransportError:
                    return  # the server went away
                if response.status_code == 204:
                    answered.append(1)

    try:
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            futures = [pool.submit(load, w) for w in range(4)]
            deadline = time.monotonic() + 60  # under load, not against a speed: 20 answers
            while len(answered) < 20 and time.monotonic() < deadline:
                time.sleep(0.05)
            server.send_signal(signal.SIGTERM)
            _, errors = server.communicate(timeout=30)
            stop.set()
            for future in futures:
                future.result()
    finally:
        server.kill()
    # uvicorn re-raises the signal after its graceful shutdown: the exit says SIGTERM
    assert server.returncode in (0, -signal.SIGTERM), errors
    assert "stopped, every answered event committed" in errors and "Traceback" not in errors
    assert len(answered) >= 20
    engine = open_store(url)
    with engine.connect() as conn:
        stored = conn.execute(select(func.count()).select_from(touchpoints)).scalar_one()
    engine.dispose()
    assert stored >= len(answered)  # a request cut off by the stop may be stored unanswered


def test_the_collector_benchmark_runs_and_loses_nothing(tmp_path: Path) -> None:
    from bench.collector import run

    result = run("sqlite", seconds=1.0, connections=8, directory=tmp_path)
    assert result["answered_204"] > 0 and result["other_statuses"] == {}  # speed: bench/
    assert result["lost"] == 0 and result["rows_stored"] >= result["answered_204"]
    assert result["server_errors"] == ""
