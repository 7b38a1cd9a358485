"""Group commit for the collector: requests wait for the batch holding their rows.

A request's rows join the pending batch; a writer thread commits the batch when it holds
``flush_events`` events or its oldest event has waited ``flush_ms``, then wakes every
request in it. A request is answered 204 only after its rows are committed, so a stop —
SIGTERM, or even a crash — never loses an event that was answered 204. ``close`` commits
what is pending before the process exits.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import Connection, Dialect, Engine, Table

from revsync.collect.importer import visitor_rows
from revsync.store.schema import identities, touchpoints, visitors

log = logging.getLogger(__name__)


class WriteFailed(RuntimeError):
    """The store refused or could not take a batch; its requests are answered 503."""


@dataclass
class _Batch:
    touchpoints: list[dict[str, Any]] = field(default_factory=list)
    identities: list[dict[str, Any]] = field(default_factory=list)
    waiters: list[asyncio.Future[None]] = field(default_factory=list)
    events: int = 0
    started: float = 0.0


class BatchWriter:
    """Writer threads (one on SQLite); ``written(kind, rows, seconds)`` reports each commit."""

    def __init__(
        self,
        engine: Engine,
        flush_events: int,
        flush_ms: int,
        written: Callable[[str, int, float], None] | None = None,
        threads: int = 3,
    ) -> None:
        self.engine = engine
        self.flush_events, self.flush_seconds = flush_events, flush_ms / 1000
        self.written = written or (lambda kind, rows, seconds: None)
        self._batch = _Batch()
        self._cond = threading.Condition()
        self._closed = False
        # PostgreSQL: commits overlap (each waits on its WAL flush) and the server groups
        # them; SQLite has one writer at a time, so one thread.
        count = 1 if engine.dialect.name == "sqlite" else threads
        self._threads = [
            threading.Thread(target=self._run, name=f"revsync-writer-{i}", daemon=True)
            for i in range(count)
        ]
        for thread in self._threads:
            thread.start()

    async def put(
        self, touchpoints: list[dict[str, Any]], identities: list[dict[str, Any]]
    ) -> None:
        """Return once the rows are committed; raise ``WriteFailed`` if they were not."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        with self._cond:
            if self._closed:
                raise WriteFailed("the collector is stopping")
            batch = self._batch
            if not batch.waiters:
                batch.started = time.monotonic()
            batch.touchpoints.extend(touchpoints)
            batch.identities.extend(identities)
            batch.waiters.append(future)
            batch.events += len(touchpoints) + len(identities)
            if batch.events >= self.flush_events or len(batch.waiters) == 1:
                self._cond.notify()  # a full batch, or the first event starts the clock
        await future

    def close(self, timeout: float = 30.0) -> None:
        """Commit what is pending and stop the thread."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def _take(self) -> _Batch | None:
        with self._cond:
            while True:
                batch = self._batch
                if batch.waiters:
                    due = batch.started + self.flush_seconds - time.monotonic()
                    if batch.events >= self.flush_events or due <= 0 or self._closed:
                        self._batch = _Batch()
                        return batch
                    self._cond.wait(due)
                elif self._closed:
                    return None
                else:
                    self._cond.wait()

    def _run(self) -> None:
        while (batch := self._take()) is not None:
            error: BaseException | None = None
            started = time.perf_counter()
            try:
                with self.engine.begin() as conn:
                    store(conn, batch.touchpoints, batch.identities)
            except Exception as exc:  # any store failure: the batch's requests get 503
                error = exc
                log.error(
                    "could not store a batch of %d events: %s",
                    batch.events,
                    type(exc).__name__,  # the message may quote row values (PII)
                )
            else:
                seconds = time.perf_counter() - started
                if batch.touchpoints:
                    self.written("touchpoint", len(batch.touchpoints), seconds)
                if batch.identities:
                    self.written("identity", len(batch.identities), seconds)
            by_loop: dict[asyncio.AbstractEventLoop, list[asyncio.Future[None]]] = {}
            for future in batch.waiters:
                by_loop.setdefault(future.get_loop(), []).append(future)
            for loop, futures in by_loop.items():  # one wake-up per event loop
                try:
                    loop.call_soon_threadsafe(_settle, futures, error)
                except RuntimeError:  # that event loop is closed
                    continue


def _settle(futures: list[asyncio.Future[None]], error: BaseException | None) -> None:
    for future in futures:
        if future.done():  # the request went away (client disconnected)
            continue
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(WriteFailed(type(error).__name__))


def store(conn: Connection, tps: list[dict[str, Any]], ids: list[dict[str, Any]]) -> None:
    """The importer's rows, stored as the importer does (visitors, then touchpoints and
    identities; a row already there kept). PostgreSQL: one statement for the batch, each
    table's rows one JSON parameter — far less work in Python than binding every value of
    every row. SQLite: one cached statement per table run over its rows (executemany)."""
    tables = [
        (visitors, visitor_rows(tps, "occurred_at") + visitor_rows(ids, "observed_at")),
        (touchpoints, tps),
        (identities, ids),
    ]
    batch = [(table, _in_key_order(table, rows)) for table, rows in tables if rows]
    if not batch:
        return
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(
            _pg_insert(tuple(table for table, _ in batch)),
            {table.name: json.dumps(rows, default=datetime.isoformat) for table, rows in batch},
        )
        return
    for table, rows in batch:
        sql, columns = _sqlite_insert(table, conn.dialect)
        conn.exec_driver_sql(sql, [_values(row, columns) for row in rows])


def _values(row: dict[str, Any], columns: list[tuple[str, Any]]) -> tuple[Any, ...]:
    return tuple(row.get(name) if bind is None else bind(row.get(name)) for name, bind in columns)


def _keys(table: Table) -> tuple[str, ...]:
    return tuple(c.name for c in table.primary_key.columns)


def _in_key_order(table: Table, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per key (the first), in key order: concurrent replicas then lock the same
    keys in the same order."""
    keys = _keys(table)
    unique = {tuple(row[k] for k in keys): row for row in reversed(rows)}
    return [row for _, row in sorted(unique.items())]


@cache
def _pg_insert(tables: tuple[Table, ...]) -> str:
    """Inserts into ``tables``, each from a JSON array of objects (a key a row lacks is
    NULL) in the parameter named as the table: the first's as the statement, the others'
    in WITH (foreign keys are checked at the statement's end)."""
    inserts = [
        f"INSERT INTO {t.name} SELECT * FROM json_populate_recordset(NULL::{t.name}, "  # noqa: S608 - names from the schema
        f"%({t.name})s::json) ON CONFLICT ({', '.join(_keys(t))}) DO NOTHING"
        for t in tables
    ]
    first, *others = inserts
    if not others:
        return first
    ctes = ", ".join(f"new_{t.name} AS ({sql})" for t, sql in zip(tables[1:], others, strict=True))
    return f"WITH {ctes} {first}"


@cache
def _sqlite_insert(table: Table, dialect: Dialect) -> tuple[str, list[tuple[str, Any]]]:
    """The insert with one ``?`` per column, and each column's name and the store type's
    bind processor (None for a value the driver takes as it is): the values SQLAlchemy
    would bind, without its per-row work."""
    names = [c.name for c in table.columns]
    sql = (
        f"INSERT INTO {table.name} ({', '.join(names)}) VALUES ({', '.join('?' * len(names))}) "  # noqa: S608 - names from the schema
        f"ON CONFLICT ({', '.join(_keys(table))}) DO NOTHING"
    )
    return sql, [
        (c.name, c.type.dialect_impl(dialect).bind_processor(dialect)) for c in table.columns
    ]
