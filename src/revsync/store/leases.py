"""Leases: one run at a time reads a given source or uploads to a given destination.

A lease is a row ``(name, owner, expires_at)``. Taking it is one atomic upsert that wins
only when the row is absent, expired or already the caller's. The holder renews it inside
each transaction that writes under it (a page of deals, a claimed batch), so nothing
commits once another run has taken it over, and a :class:`Heartbeat` renews it in between,
so a long wait (a Bulk job, a batch's retries) does not let it expire; it is dropped when
done. A run that dies leaves its leases to expire after their time to live; only then may
another run take them — and treat the rows left ``sending`` as interrupted rather than as
another run's batch in flight — unless the holder ran on the same host and its process is
provably gone (PID free, or reused by a later process): then its leases are taken at once.
"""

from __future__ import annotations

import contextvars
import logging
import os
import re
import socket
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, Engine, delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError

from revsync.errors import RevsyncError
from revsync.store.schema import leases

DEFAULT_TTL = timedelta(minutes=10)
log = logging.getLogger(__name__)


class LeaseLost(RevsyncError):
    """Another run took the lease over (this one went longer than the time to live
    without renewing it); the transaction in progress is rolled back."""


def run_owner(run_id: int) -> str:
    """How a run names itself in the leases it holds: its host, PID and the PID's start
    time, so a run on the same host can tell that the holder is dead."""
    pid = os.getpid()
    return f"run {run_id} on {socket.gethostname()} (pid {pid}, start {_started(pid)})"


_OWNER = re.compile(
    r"^run (?P<run>\d+) on (?P<host>\S+) \(pid (?P<pid>\d+)(?:, start (?P<start>\w+))?\)$"
)
_LIVE: set[int] = set()  # the runs of this process in progress


@contextmanager
def in_progress(run_id: int) -> Iterator[None]:
    """While this block lasts, run ``run_id`` of this process is alive; once it ends, a
    lease it could not give up (the store went away) is known to be dead."""
    _LIVE.add(run_id)
    try:
        yield
    finally:
        _LIVE.discard(run_id)


def _started(pid: int) -> str:
    """The process's start time in clock ticks since boot (``/proc``), or ``?``."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return "?"


def holder_is_dead(owner: str) -> bool:
    """Whether ``owner`` is a run on this host whose process is gone (its PID is free, or
    taken by a process that started later), or an earlier run of this very process (a
    worker's run that lost the store). A run on another host is never known dead."""
    found = _OWNER.match(owner)
    if found is None or found["host"] != socket.gethostname():
        return False
    pid = int(found["pid"])
    if pid == os.getpid() and found["start"] in (None, _started(pid)):  # this process
        return int(found["run"]) not in _LIVE
    if not os.path.exists(f"/proc/{pid}"):
        return sys.platform.startswith("linux")
    start = found["start"]
    return start not in (None, "?") and _started(pid) not in ("?", start)


@dataclass(frozen=True)
class Lease:
    """The lease ``name`` as ``owner`` would hold it, for ``ttl`` after each renewal."""

    engine: Engine
    name: str
    owner: str
    ttl: timedelta
    clock: Callable[[], datetime]

    def take(self) -> str | None:
        """Take the lease: ``None`` when this owner holds it now, else who holds it and
        until when."""
        now = self.clock()
        with self.engine.begin() as conn:
            insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
            stmt = insert(leases).values(
                name=self.name, owner=self.owner, expires_at=now + self.ttl
            )
            conn.execute(
                stmt.on_conflict_do_update(
                    index_elements=[leases.c.name],
                    set_={"owner": stmt.excluded.owner, "expires_at": stmt.excluded.expires_at},
                    where=(leases.c.expires_at <= now) | (leases.c.owner == self.owner),
                )
            )
            owner, until = conn.execute(
                select(leases.c.owner, leases.c.expires_at).where(leases.c.name == self.name)
            ).one()
            if owner != self.owner and holder_is_dead(owner):
                log.warning("%s: %s is gone; taking its lease over at once", self.name, owner)
                conn.execute(
                    update(leases)
                    .where(leases.c.name == self.name, leases.c.owner == owner)
                    .values(owner=self.owner, expires_at=now + self.ttl)
                )
                owner, until = conn.execute(
                    select(leases.c.owner, leases.c.expires_at).where(leases.c.name == self.name)
                ).one()
        return None if owner == self.owner else f"{owner}, until {until:%Y-%m-%d %H:%M:%S} UTC"

    def renew(self, conn: Connection) -> None:
        """Extend the lease within ``conn``'s transaction; :class:`LeaseLost` if it is no
        longer this owner's."""
        result = conn.execute(
            update(leases)
            .where(leases.c.name == self.name, leases.c.owner == self.owner)
            .values(expires_at=self.clock() + self.ttl)
        )
        if result.rowcount != 1:
            raise LeaseLost(
                f"{self.name}: another run took over (this one held it longer "
                f"than {self.ttl} without renewing); stopped here"
            )

    def drop(self) -> None:
        """Give the lease up (a no-op when another run holds it)."""
        with self.engine.begin() as conn:
            conn.execute(
                delete(leases).where(leases.c.name == self.name, leases.c.owner == self.owner)
            )


class Heartbeat:
    """Renews ``leases`` (a list the run appends to) every third of their time to live
    from a daemon thread, until :meth:`stop`. A renewal that fails is logged and tried
    again at the next beat; a lease another run took over stays lost (the next write under
    it raises :class:`LeaseLost`)."""

    def __init__(self, leases: Sequence[Lease], ttl: timedelta) -> None:
        self._leases = leases
        self._interval = ttl.total_seconds() / 3
        self._stopped = threading.Event()
        # Made in the run's context: its log records carry the run's ID too.
        beat = contextvars.copy_context().run
        self._thread = threading.Thread(
            target=beat, args=(self._beat,), name="revsync leases", daemon=True
        )

    def start(self) -> Heartbeat:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join()

    def _beat(self) -> None:
        while not self._stopped.wait(self._interval):
            for lease in list(self._leases):
                try:
                    with lease.engine.begin() as conn:
                        lease.renew(conn)
                except (LeaseLost, SQLAlchemyError) as exc:
                    log.warning("could not renew %s: %s", lease.name, type(exc).__name__)
