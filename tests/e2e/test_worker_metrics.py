"""A worker's metrics and probes, scraped from a real ``revsync worker`` process, and a
cron run's textfile."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
from typer.testing import CliRunner

from revsync.cli import app

REVSYNC = str(Path(sys.executable).parent / "revsync")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_the_worker_serves_metrics_liveness_and_readiness(tmp_path: Path) -> None:
    demo = tmp_path / "demo"
    assert CliRunner().invoke(app, ["demo", str(demo), "--visitors", "200"]).exit_code == 0
    port = free_port()
    worker = subprocess.Popen(
        [REVSYNC, "worker", "--every", "1h", "--json", "--metrics-port", str(port), "-c",
         str(demo / "revsync.yaml"), "--database-url", f"sqlite:///{demo / 'revsync.db'}"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert worker.stdout is not None
        worker.stdout.readline()  # the first run is done
        base = f"http://127.0.0.1:{port}"
        for _ in range(50):
            try:
                metrics = httpx.get(f"{base}/metrics").text
                break
            except httpx.ConnectError:
                time.sleep(0.1)
        assert 'revsync_runs_total{status="partial"} 1.0' in metrics
        assert 'revsync_deals_read_total{source="crm"}' in metrics
        assert 'revsync_ledger_rows{destination="ga4",state="sent"}' in metrics
        assert "revsync_last_run_timestamp_seconds " in metrics
        assert httpx.get(f"{base}/healthz").status_code == 200
        assert httpx.get(f"{base}/readyz").status_code == 200
        assert httpx.get(f"{base}/nope").status_code == 404
        worker.send_signal(signal.SIGTERM)
        worker.communicate(timeout=30)
    finally:
        worker.kill()
    assert worker.returncode == 0


def test_a_cron_run_writes_its_metrics_to_a_textfile(tmp_path: Path) -> None:
    demo = tmp_path / "demo"
    assert CliRunner().invoke(app, ["demo", str(demo), "--visitors", "100"]).exit_code == 0
    where = ["-c", str(demo / "revsync.yaml"), "--database-url", f"sqlite:///{tmp_path / 'x.db'}"]
    for kind, name in (("touchpoints", "touchpoints.csv"), ("identities", "leads.csv")):
        assert CliRunner().invoke(app, ["import", kind, str(demo / name), *where]).exit_code == 0
    textfile = tmp_path / "revsync.prom"
    result = CliRunner().invoke(app, ["sync", *where, "--metrics-file", str(textfile)])
    assert result.exit_code == 3, result.output
    metrics = textfile.read_text()
    assert 'revsync_runs_total{status="partial"} ' in metrics  # this test process's runs
    assert 'revsync_send_seconds_count{destination="ga4"}' in metrics
    assert 'revsync_conversion_sends_total{destination="ga4",outcome="sent"}' in metrics


def test_a_cron_run_pushes_its_metrics_to_a_pushgateway(tmp_path: Path) -> None:
    from tests.emulators.http_base import EmulatorServer, Request, Response

    class Pushgateway(EmulatorServer):
        def handle(self, request: Request) -> Response:
            return Response(200 if request.path == "/metrics/job/revsync" else 404)

    demo = tmp_path / "demo"
    assert CliRunner().invoke(app, ["demo", str(demo), "--visitors", "100"]).exit_code == 0
    with Pushgateway() as gateway:
        result = CliRunner().invoke(app, [
            "sync", "-c", str(demo / "revsync.yaml"), "--database-url",
            f"sqlite:///{demo / 'revsync.db'}", "--metrics-push", gateway.url,
        ])  # fmt: skip
        assert result.exit_code == 3, result.output
        (pushed,) = gateway.log
    assert pushed.request.method == "PUT" and pushed.response.status == 200
    assert b'revsync_runs_total{status="partial"} ' in pushed.request.body  # this process's
