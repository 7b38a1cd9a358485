"""The upload stage: drain a destination's due ledger rows in batches, record each row's
outcome, and read back the verdicts of requests the platform processes later."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import Engine

from revsync.destinations.base import Destination, ReadsRequestStatus, RequestVerdict
from revsync.destinations.retry import UncertainCall
from revsync.domain import OutcomeStatus, UploadOutcome
from revsync.errors import RevsyncError, TransientError
from revsync.store.leases import Lease
from revsync.sync import ledger
from revsync.sync.ledger import State
from revsync.sync.summary import RunSummary

log = logging.getLogger(__name__)
STATUS_DELAY = timedelta(minutes=30)  # Data Manager processes requests asynchronously
Progress = Callable[[str, int, int | None], None]


def upload(
    engine: Engine,
    destination: Destination,
    summary: RunSummary,
    clock: Callable[[], datetime],
    progress: Progress,
    lease: Lease,
    stopping: Callable[[], bool] = lambda: False,
) -> None:
    """Drain the destination's due rows in batches; read back earlier request verdicts.

    ``lease`` is this run's hold on the destination: rows left ``sending`` are another
    run's only while it holds the lease, so they count as interrupted once this run has
    it; each batch is claimed in a transaction that renews it. Once ``stopping()``, no
    further batch is claimed.
    A failure of the whole destination (bad credentials, an account not allowed to
    upload) stops it: its rows go back to planned, unspent, and the run fails.
    """
    run_started = summary.started_at
    with engine.begin() as conn:
        ledger.recover_interrupted(conn, destination.name, destination.resend_safe, clock())
    _read_back(engine, destination, summary, clock)
    sent = 0
    config = getattr(destination, "config", None)
    budget = float(getattr(config, "retry_budget_seconds", 0) or 0)
    retrying = 0.0  # seconds spent on batches that ended in retries, this run
    while not stopping():
        if budget and retrying > budget:
            summary.warnings.append(
                f"{destination.name}: {retrying:.0f} s spent on retries this run (budget "
                f"{budget:.0f} s); the rest waits for the next run"
            )
            break
        now = clock()
        with engine.begin() as conn:
            lease.renew(conn)
            batch = ledger.due(conn, destination.name, now, destination.batch_size, run_started)
            if not batch:
                break
            ledger.mark_sending(conn, [c.key for c in batch], now)
        started = time.monotonic()
        try:
            outcomes = destination.send(batch)
        except TransientError as exc:
            # An uncertain send is sent again only where the platform deduplicates.
            status = (OutcomeStatus.UNKNOWN
                      if isinstance(exc, UncertainCall) and not destination.resend_safe
                      else OutcomeStatus.RETRY)  # fmt: skip
            outcomes = [
                UploadOutcome(c.key, status, type(exc).__name__, str(exc), exc.retry_after)
                for c in batch
            ]
        except RevsyncError as exc:
            with engine.begin() as conn:
                ledger.release(conn, [c.key for c in batch], clock())
            summary.failures.append(f"{destination.name}: {exc}")
            log.error("destination %s stopped: %s", destination.name, exc)
            return
        summary.batch_seconds[destination.name].append(time.monotonic() - started)
        answered = {o.key for o in outcomes}
        outcomes += [
            UploadOutcome(c.key, OutcomeStatus.RETRY, "NO_ANSWER", "no outcome for this row")
            for c in batch
            if c.key not in answered
        ]
        with engine.begin() as conn:
            ledger.record_outcomes(conn, outcomes, clock())
        if any(o.status is OutcomeStatus.RETRY for o in outcomes):
            retrying += time.monotonic() - started
        tally = summary.results.setdefault(destination.name, {})
        for outcome in outcomes:
            tally[outcome.status.value] = tally.get(outcome.status.value, 0) + 1
            if outcome.status is OutcomeStatus.REJECTED:
                summary.rejections[f"{destination.name}: {outcome.code}"] += 1
            elif outcome.status is OutcomeStatus.SKIPPED:
                summary.skipped[f"{destination.name}: {outcome.message}"] += 1
        sent += len(batch)
        progress(f"upload {destination.name}", sent, None)


def _read_back(
    engine: Engine, destination: Destination, summary: RunSummary, clock: Callable[[], datetime]
) -> None:
    """Record the verdicts of requests the platform processed after answering."""
    transport = getattr(destination, "transport", None)
    if not isinstance(transport, ReadsRequestStatus):
        return
    now = clock()
    with engine.connect() as conn:
        pending = ledger.pending_requests(
            conn, destination.name, transport.accepted_code, now - STATUS_DELAY
        )
    if not pending:
        return
    try:
        verdicts = transport.check_status(pending)
    except TransientError as exc:
        summary.warnings.append(f"{destination.name}: request status not read: {exc}")
        return
    with engine.begin() as conn:
        for request_id, verdict in verdicts.items():
            outcome = _verdict_state(verdict)
            if outcome is not None:
                ledger.record_request_status(conn, request_id, *outcome, now)


def _verdict_state(verdict: RequestVerdict) -> tuple[State, str, str] | None:
    """Ledger state, code and message for a request verdict; ``None`` while processing."""
    reasons = ", ".join(f"{name}={count}" for name, count in sorted(verdict.errors.items()))
    detail = f"{verdict.record_count} records" + (f"; errors: {reasons}" if reasons else "")
    if verdict.state in ("PROCESSING", "REQUEST_STATUS_UNKNOWN"):
        return None
    if verdict.state == "SUCCESS":
        return State.SENT, "DM_SUCCESS", detail
    if verdict.state == "FAILED" and set(verdict.errors) <= {"DUPLICATE_TRANSACTION_ID"}:
        return State.SENT, "DM_ALREADY_SENT", detail
    if verdict.state == "FAILED":
        return State.REJECTED, "DM_FAILED", detail
    return State.SENT, f"DM_{verdict.state}", detail
