"""Group commit for the collector: requests wait for the batch holding their rows.

A request's rows join the pending batch; a writer thread commits the batch when it holds
``flush_events`` events or its oldest event has waited ``flush_ms``, then wakes every
request in it. A request is answered 204 only after its rows are committed, so a stop —
SIGTERM, or even a crash — never loses an event that was answered 204. ``close`` commits
what is pending before the process exits.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine

from revsync.collect.importer import _store_identities, _store_touchpoints

log = logging.getLogger(__name__)


class WriteFailed(RuntimeError):
    """The store refused or could not take a batch; its requests are answered 503."""


@dataclass
class _Waiter:
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[None]


@dataclass
class _Batch:
    touchpoints: list[dict[str, Any]] = field(default_factory=list)
    identities: list[dict[str, Any]] = field(default_factory=list)
    waiters: list[_Waiter] = field(default_factory=list)
    events: int = 0
    started: float = 0.0


class BatchWriter:
    """One writer thread per process; ``written(kind, rows, seconds)`` reports each commit."""

    def __init__(
        self,
        engine: Engine,
        flush_events: int,
        flush_ms: int,
        written: Callable[[str, int, float], None] | None = None,
    ) -> None:
        self.engine = engine
        self.flush_events, self.flush_seconds = flush_events, flush_ms / 1000
        self.written = written or (lambda kind, rows, seconds: None)
        self._batch = _Batch()
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="revsync-writer", daemon=True)
        self._thread.start()

    async def put(
        self, touchpoints: list[dict[str, Any]], identities: list[dict[str, Any]]
    ) -> None:
        """Return once the rows are committed; raise ``WriteFailed`` if they were not."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        with self._cond:
            if self._closed:
                raise WriteFailed("the collector is stopping")
            batch = self._batch
            if not batch.waiters:
                batch.started = time.monotonic()
            batch.touchpoints.extend(touchpoints)
            batch.identities.extend(identities)
            batch.waiters.append(_Waiter(loop, future))
            batch.events += len(touchpoints) + len(identities)
            if batch.events >= self.flush_events:
                self._cond.notify()
            elif len(batch.waiters) == 1:
                self._cond.notify()  # start the batch's clock
        await future

    def close(self, timeout: float = 30.0) -> None:
        """Commit what is pending and stop the thread."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join(timeout)

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
                    _store_touchpoints(conn, batch.touchpoints)
                    _store_identities(conn, batch.identities)
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
            for waiter in batch.waiters:
                try:
                    waiter.loop.call_soon_threadsafe(_settle, waiter.future, error)
                except RuntimeError:  # that request's event loop is closed
                    continue


def _settle(future: asyncio.Future[None], error: BaseException | None) -> None:
    if future.done():  # the request went away (client disconnected)
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(WriteFailed(type(error).__name__))
