"""The collector's Prometheus metrics (``GET /metrics``)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram


class Metrics:
    """Counters by endpoint, status and reason; the labelled children are looked up once."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "revsync_collector_requests", "Requests by endpoint and status.",
            ["endpoint", "status"], registry=self.registry,
        )  # fmt: skip
        self.written = Counter(
            "revsync_collector_events_written", "Rows committed, by kind.", ["kind"],
            registry=self.registry,
        )  # fmt: skip
        self.rejects = Counter(
            "revsync_collector_rejects", "Requests refused or dropped, by reason.", ["reason"],
            registry=self.registry,
        )  # fmt: skip
        self.write_seconds = Histogram(
            "revsync_collector_write_seconds", "Time to commit one batch.",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
            registry=self.registry,
        )  # fmt: skip
        self._requests: dict[tuple[str, int], Counter] = {}
        self._rejects: dict[str, Counter] = {}

    def request(self, endpoint: str, status: int) -> None:
        child = self._requests.get((endpoint, status))
        if child is None:
            child = self._requests[endpoint, status] = self.requests.labels(endpoint, str(status))
        child.inc()

    def reject(self, reason: str) -> None:
        child = self._rejects.get(reason)
        if child is None:
            child = self._rejects[reason] = self.rejects.labels(reason)
        child.inc()

    def on_written(self, kind: str, rows: int, seconds: float) -> None:
        self.written.labels(kind).inc(rows)
        if kind == "touchpoint" or rows:
            self.write_seconds.observe(seconds)
