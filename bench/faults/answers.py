"""Trials whose fault is in the platform's answer: whole syncs run in this process (real
transports, real retries with short waits) against GA4 and Meta emulators that misbehave
after, or before, processing a request."""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc

from bench.faults.world import (
    SECRETS,
    TIMEOUT,
    Platforms,
    Trial,
    count,
    import_dataset,
    platforms,
    settle_by_log,
    store,
    write_dataset,
)
from revsync.config.loader import load_config
from revsync.config.settings import Settings
from revsync.destinations.retry import RetryPolicy
from revsync.store.engine import open_store
from revsync.sync import factory
from revsync.sync.job import SyncJob


def _ga4_5xx(times: int, p: Platforms) -> None:
    p.ga4.process_then_fail(times, 503)


def _ga4_timeout(times: int, p: Platforms) -> None:
    p.ga4.process_then_stall(TIMEOUT + 0.3, times)


def _ga4_reset(times: int, p: Platforms) -> None:
    p.ga4.process_then_reset(times)


def _ga4_429(times: int, p: Platforms) -> None:
    p.ga4.fail_next(times, 429)


def _meta_5xx(times: int, p: Platforms) -> None:
    p.meta.process_then_fail(times, 500)


def _google_unavailable(times: int, p: Platforms) -> None:
    p.ads.process_then_abort(grpc.StatusCode.UNAVAILABLE, times)


Inject = Callable[[int, Platforms], None]
FAULTS: dict[str, Inject] = {
    "ga4-5xx-after": _ga4_5xx,  # GA4 records the events, then answers 503
    "ga4-timeout-after": _ga4_timeout,  # ... then answers after the client's timeout
    "ga4-reset-after": _ga4_reset,  # ... then resets the connection
    "ga4-429": _ga4_429,  # GA4 refuses with 429 before processing (safe to retry)
    "meta-5xx-after": _meta_5xx,  # Meta records the events, then answers 500 (dedupes)
    "google-unavailable-after": _google_unavailable,  # Google stores, then UNAVAILABLE
}


def run(kind: str, store_kind: str, seed: int, visitors: int, workdir: Path) -> Trial:
    rng = random.Random(seed)
    settings = Settings(**SECRETS)
    policy = RetryPolicy(attempts=3, initial_wait=0.01, max_wait=0.05, jitter=0.0)
    trial = Trial(kind, store_kind)
    with platforms() as p, store(store_kind, workdir) as url:
        files = write_dataset(workdir, seed, visitors, p)
        import_dataset(url, files)
        config = load_config(workdir / "revsync.yaml")
        engine = open_store(url)

        def sync(later: timedelta = timedelta(0)) -> None:
            clock = lambda: datetime.now(UTC) + later  # noqa: E731 - past the ledger's backoff
            destinations = factory.build_destinations(config, settings, clock)
            for destination in destinations:  # short in-process retries for the bench
                transport: Any = getattr(destination, "transport", None)
                if transport is not None and hasattr(transport, "_retry"):
                    transport._retry = policy
            sources = factory.build_sources(config, settings)
            SyncJob(engine, config, sources, destinations, clock=clock).run()

        FAULTS[kind](rng.randint(1, 6), p)
        sync()
        sync(timedelta(hours=1))  # later runs: what is due again is sent
        engine.dispose()
        trial.settled += settle_by_log(url, p.ga4)
        engine = open_store(url)
        sync(timedelta(hours=3))
        engine.dispose()
        count(trial, url, p)
    return trial
