"""Leases: one run at a time reads a given source or uploads to a given destination.

A lease is a row ``(name, owner, expires_at)``. Taking it is one atomic upsert that wins
only when the row is absent, expired or already the caller's. The holder renews it inside
each transaction that writes under it (a page of deals, a claimed batch), so nothing
commits once another run has taken it over, and drops it when done. A run that dies leaves
its leases to expire after their time to live; only then may another run take them — and
treat the rows left ``sending`` as interrupted rather than as another run's batch in flight.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, Engine, delete, select, update
from sqlalchemy.dialects import postgresql, sqlite

from revsync.errors import RevsyncError
from revsync.store.schema import leases

DEFAULT_TTL = timedelta(minutes=10)


class LeaseLost(RevsyncError):
    """Another run took the lease over (this one went longer than the time to live
    without renewing it); the transaction in progress is rolled back."""


def run_owner(run_id: int) -> str:
    """How a run names itself in the leases it holds."""
    return f"run {run_id} on {socket.gethostname()} (pid {os.getpid()})"


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
