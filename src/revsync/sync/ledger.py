"""The upload ledger: one row per planned conversion and its state.

planned -> sending -> sent | rejected(code) | failed(attempts, next_attempt_at)
                   -> validated (a dry run passed: due again on the next run)
                   -> skipped (revsync decided not to send it: too old for the platform)
skipped (when planned: no consent, nothing credited, ...) -> planned (the deal changed)
failed  -> sending (when due)                 sending -> unknown (after a crash, or an
                                              uncertain send, where the platform does not
                                              dedupe: never sent again by revsync itself)
sending -> planned (the destination failed as a whole: nothing was decided)

An operator settles what revsync cannot decide (``revsync ledger``): unknown -> sent (the
platform has it) or -> planned (send it again); failed or rejected -> planned (after a fix).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any

from sqlalchemy import Connection, and_, func, select, update

from revsync.destinations.ga4 import Ga4Destination, request_group
from revsync.domain import Conversion, ConversionKind, OutcomeStatus, UploadOutcome
from revsync.store.queries import upsert
from revsync.store.schema import conversions

MAX_ATTEMPTS = 8
INTERRUPTED = (
    "a run stopped after it began sending this row (at the time shown as updated) and "
    "before it recorded the answer: the request may or may not have reached the platform"
)
_NOT_SENT = ("rejected", "skipped")  # rows that never reach the platform
# A skipped row planned again (or skipped for another reason) takes the new row's values.
_REPLANNED = ("touchpoint_id", "state", "value", "currency", "event_time", "payload",
              "attempts", "error_code", "error_message", "run_id", "updated_at",
              "batch_group")  # fmt: skip
BASE_BACKOFF = timedelta(minutes=5)


class State(StrEnum):
    PLANNED = "planned"
    SENDING = "sending"
    SENT = "sent"
    REJECTED = "rejected"
    FAILED = "failed"
    UNKNOWN = "unknown"
    VALIDATED = "validated"
    SKIPPED = "skipped"


def add_planned(
    conn: Connection, planned: Sequence[Conversion], run_id: int, now: datetime
) -> list[Conversion]:
    """Insert the conversions whose key is new, or was skipped before; return those."""
    if not planned:
        return []
    states = _states(conn, [c.key for c in planned])
    new = list(
        {c.key: c for c in planned if states.get(c.key, State.SKIPPED) == State.SKIPPED}.values()
    )
    upsert(conn, conversions, [_row(c, State.PLANNED, run_id, now) for c in new], _REPLANNED)
    return new


def add_skipped(
    conn: Connection, skipped: Sequence[tuple[Conversion, str, str]], run_id: int, now: datetime
) -> int:
    """Record what revsync decided not to send, as (placeholder conversion, code, reason);
    a key that is already planned, sent or settled is left alone. Returns rows written."""
    if not skipped:
        return 0
    states = _states(conn, [c.key for c, _, _ in skipped])
    rows = [
        {**_row(c, State.SKIPPED, run_id, now), "error_code": code, "error_message": reason}
        for c, code, reason in {c.key: (c, code, r) for c, code, r in skipped}.values()
        if states.get(c.key, State.SKIPPED) == State.SKIPPED
    ]
    upsert(conn, conversions, rows, _REPLANNED)
    return len(rows)


def _states(conn: Connection, keys: Sequence[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for start in range(0, len(keys), 1_000):
        chunk = keys[start : start + 1_000]
        query = select(conversions.c.key, conversions.c.state).where(conversions.c.key.in_(chunk))
        out.update({key: state for key, state in conn.execute(query)})
    return out


def _row(c: Conversion, state: State, run_id: int, now: datetime) -> dict[str, object]:
    return {
        "key": c.key,
        "destination": c.destination,
        "platform": c.platform,
        "kind": c.kind.value,
        "source": c.source,
        "deal_id": c.deal_id,
        "touchpoint_id": c.touchpoint_id,
        "original_key": c.original_key,
        "state": state.value,
        "value": c.value,
        "currency": c.currency,
        "event_time": c.event_time,
        "payload": c.to_json().decode(),
        "batch_group": request_group(c) if c.platform == Ga4Destination.platform else None,
        "attempts": 0,
        "error_code": None,
        "error_message": None,
        "run_id": run_id,
        "created_at": now,
        "updated_at": now,
    }


def deal_ledger(
    conn: Connection, source: str, deal_ids: Iterable[str]
) -> dict[tuple[str, str], list[dict[str, object]]]:
    """Ledger rows of these deals, grouped by (deal_id, destination), oldest first."""
    out: dict[tuple[str, str], list[dict[str, object]]] = {}
    ids = sorted(set(deal_ids))
    for start in range(0, len(ids), 500):
        query = (
            select(
                conversions.c.key,
                conversions.c.deal_id,
                conversions.c.destination,
                conversions.c.kind,
                conversions.c.state,
                conversions.c.value,
                conversions.c.original_key,
                conversions.c.payload,
                conversions.c.created_at,
            )
            .where(
                conversions.c.source == source, conversions.c.deal_id.in_(ids[start : start + 500])
            )
            .order_by(conversions.c.created_at, conversions.c.key)
        )
        for row in conn.execute(query).mappings():
            out.setdefault((row["deal_id"], row["destination"]), []).append(dict(row))
    return out


def effective_values(rows: Sequence[dict[str, object]]) -> dict[str, tuple[Decimal, bool]]:
    """For each original conversion key: its current value and whether it is retracted.

    A restatement or retraction counts once planned: it will be sent, so planning another
    one for the same change would double it.
    """
    current: dict[str, tuple[Decimal, bool]] = {}
    for row in rows:
        if row["kind"] == ConversionKind.CONVERSION and row["state"] not in _NOT_SENT:
            current[str(row["key"])] = (Decimal(str(row["value"])), False)
    for row in rows:
        original = row["original_key"]
        if original is None or str(original) not in current or row["state"] in _NOT_SENT:
            continue
        value, _ = current[str(original)]
        if row["kind"] == ConversionKind.RETRACTION:
            current[str(original)] = (value, True)
        elif row["kind"] == ConversionKind.RESTATEMENT:
            current[str(original)] = (Decimal(str(row["value"])), False)
    return current


def recover_interrupted(
    conn: Connection, destination: str, resend_safe: bool, now: datetime
) -> int:
    """Rows left ``sending`` by a crash: back to planned if the platform dedupes on the
    key, else ``unknown`` for an operator to decide (never sent twice silently)."""
    query = update(conversions).where(
        conversions.c.destination == destination, conversions.c.state == State.SENDING
    )
    if resend_safe:
        values: dict[str, object] = {"state": State.PLANNED.value, "updated_at": now}
    else:  # ``updated_at`` stays the time the send began: what an operator checks against
        values = {"state": State.UNKNOWN.value, "error_code": "INTERRUPTED",
                  "error_message": INTERRUPTED}  # fmt: skip
    return conn.execute(query.values(**values)).rowcount or 0


def due(
    conn: Connection, destination: str, now: datetime, limit: int, run_started: datetime
) -> list[Conversion]:
    """Rows to send now: planned, failed and due, or validated by an earlier run.

    Rows of one ``batch_group`` (GA4: one client, person and consent; one request carries
    up to 25 of them) come together: a group the limit would cut is left whole for the
    next batch, unless it is the batch's only group.
    """
    row = conversions.c
    # Each state's rows come in index order (destination, state, batch_group, created_at,
    # key), so no query sorts the destination's whole backlog for one batch.
    wanted = (
        row.state == State.PLANNED,
        and_(row.state == State.FAILED, row.next_attempt_at <= now),
        and_(row.state == State.VALIDATED, row.updated_at < run_started),
    )
    rows: list[Any] = []
    for condition in wanted:
        rows += conn.execute(
            select(row.payload, row.batch_group, row.created_at, row.key)
            .where(row.destination == destination, condition)
            .order_by(row.batch_group, row.created_at, row.key)
            .limit(limit + 1)
        ).all()
    nulls_first = conn.dialect.name == "sqlite"  # PostgreSQL sorts NULL last
    rows.sort(key=lambda r: ((r.batch_group is None) != nulls_first, r.batch_group or "",
                             r.created_at, r.key))  # fmt: skip
    rows = rows[: limit + 1]
    if len(rows) > limit:
        cut = rows[limit].batch_group
        rows = rows[:limit]
        if cut is not None and rows[-1].batch_group == cut and rows[0].batch_group != cut:
            rows = [r for r in rows if r.batch_group != cut]
    return [Conversion.from_json(r.payload) for r in rows]


def release(conn: Connection, keys: Sequence[str], now: datetime) -> None:
    """Put rows marked ``sending`` back to planned when nothing was decided for them."""
    conn.execute(
        update(conversions)
        .where(conversions.c.key.in_(keys), conversions.c.state == State.SENDING)
        .values(state=State.PLANNED.value, updated_at=now)
    )


def mark_sending(conn: Connection, keys: Sequence[str], now: datetime) -> None:
    conn.execute(
        update(conversions)
        .where(conversions.c.key.in_(keys))
        .values(state=State.SENDING.value, updated_at=now)
    )


def record_outcomes(conn: Connection, outcomes: Sequence[UploadOutcome], now: datetime) -> None:
    """Write each row's outcome; transient failures back off exponentially, then give up."""
    row = conversions.c
    sent = [o.key for o in outcomes if o.status is OutcomeStatus.SENT and o.request_id is None]
    for start in range(0, len(sent), 1_000):
        conn.execute(
            update(conversions)
            .where(row.key.in_(sent[start : start + 1_000]))
            .values(
                state=State.SENT.value,
                error_code=None,
                error_message=None,
                next_attempt_at=None,
                attempts=row.attempts + 1,
                updated_at=now,
            )
        )
    for outcome in outcomes:
        if outcome.status is OutcomeStatus.SENT and outcome.request_id is None:
            continue
        if outcome.status is OutcomeStatus.VALIDATED:
            conn.execute(
                update(conversions)
                .where(row.key == outcome.key)
                .values(
                    state=State.VALIDATED.value,
                    error_code=outcome.code,
                    error_message=outcome.message,
                    updated_at=now,
                )
            )
            continue
        if outcome.status in (OutcomeStatus.SENT, OutcomeStatus.ALREADY_SENT):
            values: dict[str, object] = {
                "state": State.SENT.value,
                "error_code": outcome.code,
                "error_message": None,
                "next_attempt_at": None,
                "request_id": outcome.request_id,
            }
        elif outcome.status in (OutcomeStatus.SKIPPED, OutcomeStatus.UNKNOWN):
            state = State.SKIPPED if outcome.status is OutcomeStatus.SKIPPED else State.UNKNOWN
            values = {
                "state": state.value, "error_code": outcome.code,
                "error_message": outcome.message, "next_attempt_at": None,
            }  # fmt: skip
            conn.execute(update(conversions).where(row.key == outcome.key).values(
                **values, updated_at=now))  # fmt: skip
            continue
        elif outcome.status is OutcomeStatus.REJECTED:
            values = {
                "state": State.REJECTED.value, "error_code": outcome.code,
                "error_message": outcome.message, "next_attempt_at": None,
            }  # fmt: skip
        else:
            attempts = conn.execute(select(row.attempts).where(row.key == outcome.key)).scalar_one()
            if attempts + 1 >= MAX_ATTEMPTS:
                values = {
                    "state": State.REJECTED.value, "error_code": "RETRIES_EXHAUSTED",
                    "error_message": f"{outcome.code}: {outcome.message}", "next_attempt_at": None,
                }  # fmt: skip
            else:
                backoff = BASE_BACKOFF * (2**attempts)
                values = {
                    "state": State.FAILED.value, "error_code": outcome.code,
                    "error_message": outcome.message,
                    "next_attempt_at": max(outcome.retry_after or now, now + backoff),
                }  # fmt: skip
        conn.execute(
            update(conversions)
            .where(row.key == outcome.key)
            .values(**values, attempts=row.attempts + 1, updated_at=now)
        )


def counts(conn: Connection, run_id: int | None = None) -> dict[str, dict[str, int]]:
    """Ledger rows per destination and state (of one run's plans, or all)."""
    query = select(conversions.c.destination, conversions.c.state, func.count()).group_by(
        conversions.c.destination, conversions.c.state
    )
    if run_id is not None:
        query = query.where(conversions.c.run_id == run_id)
    out: dict[str, dict[str, int]] = {}
    for destination, state, count in conn.execute(query):
        out.setdefault(destination, {})[state] = count
    return out


def pending_requests(
    conn: Connection, destination: str, code: str, older_than: datetime
) -> list[str]:
    """Request IDs of sent rows whose processing status has not been read back yet."""
    query = (
        select(conversions.c.request_id)
        .where(
            conversions.c.destination == destination,
            conversions.c.state == State.SENT,
            conversions.c.error_code == code,
            conversions.c.request_id.is_not(None),
            conversions.c.updated_at <= older_than,
        )
        .distinct()
    )
    return [r for r in conn.execute(query).scalars() if r]


def record_request_status(
    conn: Connection, request_id: str, state: State, code: str, message: str, now: datetime
) -> None:
    """Write what the platform made of a whole request onto each of its rows."""
    conn.execute(
        update(conversions)
        .where(conversions.c.request_id == request_id)
        .values(state=state.value, error_code=code, error_message=message, updated_at=now)
    )


# What an operator may settle each state as (``revsync ledger``).
OPERATOR_MOVES: dict[State, tuple[State, ...]] = {
    State.UNKNOWN: (State.SENT, State.PLANNED),
    State.FAILED: (State.PLANNED,),
    State.REJECTED: (State.PLANNED,),
}


def rows_in(
    conn: Connection,
    destination: str | None,
    state: State | None,
    deal_id: str | None,
    limit: int,
) -> list[dict[str, object]]:
    """Ledger rows, newest change first, without their payloads."""
    row = conversions.c
    query = select(
        row.key, row.destination, row.source, row.deal_id, row.kind, row.state, row.value,
        row.currency, row.attempts, row.error_code, row.error_message, row.updated_at,
    ).order_by(row.updated_at.desc(), row.key).limit(limit)  # fmt: skip
    if destination is not None:
        query = query.where(row.destination == destination)
    if state is not None:
        query = query.where(row.state == state.value)
    if deal_id is not None:
        query = query.where(row.deal_id == deal_id)
    return [dict(found) for found in conn.execute(query).mappings()]


def settle(
    conn: Connection,
    destination: str,
    from_state: State,
    to_state: State,
    now: datetime,
    deal_id: str | None = None,
    key: str | None = None,
) -> int:
    """Move ``destination``'s rows in ``from_state`` (of one deal, one row by ``key``, or
    all) to ``to_state``; the number moved. Rows sent again start with no attempts and no
    error. ``ValueError`` for a move an operator may not make."""
    if to_state not in OPERATOR_MOVES.get(from_state, ()):
        raise ValueError(f"{from_state.value} rows cannot be settled as {to_state.value}")
    values: dict[str, object] = {"state": to_state.value, "updated_at": now}
    if to_state is State.PLANNED:
        values |= {"attempts": 0, "next_attempt_at": None, "error_code": None,
                   "error_message": None}  # fmt: skip
    query = update(conversions).where(
        conversions.c.destination == destination, conversions.c.state == from_state.value
    )
    if deal_id is not None:
        query = query.where(conversions.c.deal_id == deal_id)
    if key is not None:
        query = query.where(conversions.c.key == key)
    return conn.execute(query.values(**values)).rowcount or 0
