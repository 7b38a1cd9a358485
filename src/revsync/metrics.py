"""Prometheus metrics of runs, and the worker's ``/metrics``, ``/healthz`` and ``/readyz``.

Figures come from each run's summary: runs by status, deals read, this run's sends by
destination and outcome (``retry`` among them), each batch's send time by destination,
rejections by code, the ledger backlog by state, the last run's and the last successful
run's time. A worker serves them over HTTP; a cron job writes
them to a textfile for node_exporter's textfile collector."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    push_to_gateway,
    write_to_textfile,
)

from revsync.sync.summary import RunSummary

REGISTRY = CollectorRegistry()
RUNS = Counter("revsync_runs", "Runs by final status.", ["status"], registry=REGISTRY)
DEALS = Counter("revsync_deals_read", "Deals read, by source.", ["source"], registry=REGISTRY)
SENDS = Counter("revsync_conversion_sends", "Ledger rows a run sent or tried, by outcome.",
                ["destination", "outcome"], registry=REGISTRY)  # fmt: skip
REJECTS = Counter("revsync_rejections", "Rows a platform rejected, by destination: code.",
                  ["code"], registry=REGISTRY)  # fmt: skip
BACKLOG = Gauge("revsync_ledger_rows", "Ledger rows by destination and state, after a run.",
                ["destination", "state"], registry=REGISTRY)  # fmt: skip
LAST_RUN = Gauge("revsync_last_run_timestamp_seconds", "When the last run ended.",
                 registry=REGISTRY)  # fmt: skip
LAST_OK = Gauge("revsync_last_success_timestamp_seconds", "When the last ok run ended.",
                registry=REGISTRY)  # fmt: skip
SEND_SECONDS = Histogram("revsync_send_seconds", "Time one batch took to send, retries within "
                         "it included, by destination.", ["destination"], registry=REGISTRY,
                         buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300))  # fmt: skip
RUN_SECONDS = Gauge("revsync_last_run_seconds", "How long the last run took.",
                    registry=REGISTRY)  # fmt: skip


def observe(summary: RunSummary, now: float | None = None) -> None:
    """Count one finished run."""
    ended = time.time() if now is None else now
    RUNS.labels(summary.status).inc()
    for source, n in summary.deals_read.items():
        DEALS.labels(source).inc(n)
    for destination, outcomes in summary.results.items():
        for outcome, n in outcomes.items():
            SENDS.labels(destination, str(outcome)).inc(n)
    for code, n in summary.rejections.items():
        REJECTS.labels(code).inc(n)
    for destination, states in summary.ledger.items():
        for state, n in states.items():
            BACKLOG.labels(destination, state).set(n)
    for destination, seconds in summary.batch_seconds.items():
        for value in seconds:
            SEND_SECONDS.labels(destination).observe(value)
    LAST_RUN.set(ended)
    RUN_SECONDS.set(summary.seconds)
    if summary.status == "ok":
        LAST_OK.set(ended)


def write_textfile(path: Path) -> None:
    """The metrics as a node_exporter textfile (written to a temporary file, then renamed)."""
    write_to_textfile(str(path), REGISTRY)


def push(gateway: str) -> None:
    """The metrics to a Prometheus Pushgateway (``host:port`` or URL), job ``revsync``."""
    push_to_gateway(gateway, job="revsync", registry=REGISTRY, timeout=10)


class Health:
    """What the probes answer: alive unless a run has been going for longer than
    ``stuck_after`` seconds (a hung run); ready once a run has started and the store
    answers."""

    def __init__(self, store_answers: Callable[[], bool], stuck_after: float) -> None:
        self.store_answers = store_answers
        self.stuck_after = stuck_after
        self.running_since: float | None = None
        self.ran = False

    def begin(self) -> None:
        self.running_since, self.ran = time.monotonic(), True

    def end(self) -> None:
        self.running_since = None

    def alive(self) -> bool:
        since = self.running_since
        return since is None or time.monotonic() - since <= self.stuck_after

    def ready(self) -> bool:
        return self.ran and self.store_answers()


def serve(port: int, health: Health, host: str = "0.0.0.0") -> ThreadingHTTPServer:  # noqa: S104
    """``/metrics``, ``/healthz`` (liveness) and ``/readyz`` (readiness) in a daemon thread."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/metrics":
                self._answer(200, generate_latest(REGISTRY), CONTENT_TYPE_LATEST)
            elif self.path in ("/healthz", "/readyz"):
                good = health.alive() if self.path == "/healthz" else health.ready()
                self._answer(200 if good else 503, b"ok\n" if good else b"not ok\n")
            else:
                self._answer(404, b"not found\n")

        def _answer(self, status: int, body: bytes, kind: str = "text/plain") -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            """Probes every few seconds are not log lines."""

    server = ThreadingHTTPServer((host, port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True, name="metrics").start()
    return server
