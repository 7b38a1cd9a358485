"""``revsync doctor``'s look at the store: reachable and migrated, the last run, leases
left behind, and ledger rows that wait for an operator's decision. Read-only."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine, func, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from revsync.store.engine import create_store_engine, needs_upgrade
from revsync.store.schema import conversions, leases, runs

if TYPE_CHECKING:
    from revsync.checks import CheckResult


class StoreHealth:
    """The doctor's checks of the store at ``url`` (it never creates or migrates it)."""

    def __init__(self, url: str, clock: Callable[[], datetime] | None = None) -> None:
        self.url = url
        self.clock = clock or (lambda: datetime.now(UTC))
        self._engine: Engine | None = None

    def check(self) -> Iterator[CheckResult]:
        from revsync.checks import fail, ok, warn

        url = make_url(self.url)
        where = url.render_as_string(hide_password=True)
        file = url.database if url.get_backend_name() == "sqlite" else None
        if file not in (None, "", ":memory:") and not Path(str(file)).exists():
            yield warn("store", f"no store at {where} yet: the first sync creates it")
            return
        self._engine = engine = create_store_engine(self.url)
        try:
            behind = needs_upgrade(engine)
        except OperationalError as exc:
            yield fail("store", f"cannot reach {where}: {type(exc.orig).__name__}")
            return
        if behind:
            yield warn("store", f"{where}: migrations pending; the next command applies them "
                       "(or `revsync db upgrade`)")  # fmt: skip
            return
        yield ok("store", f"{where}: reachable, schema up to date")
        with engine.connect() as conn:
            last = conn.execute(
                select(runs.c.id, runs.c.status, runs.c.started_at).order_by(runs.c.id.desc())
            ).first()
            held = conn.execute(select(leases.c.name, leases.c.owner, leases.c.expires_at)).all()
            waiting = conn.execute(
                select(conversions.c.destination, conversions.c.state, func.count())
                .where(conversions.c.state.in_(("unknown", "failed")))
                .group_by(conversions.c.destination, conversions.c.state)
            ).all()
        if last is None:
            yield ok("last run", "none yet")
        else:
            text = f"run {last.id} {last.status}, started {last.started_at:%Y-%m-%d %H:%M} UTC"
            good = last.status in ("ok", "partial", "running", "stopped")
            yield ok("last run", text) if good else warn("last run", f"{text}: see its summary")
        now = self.clock()
        for name, owner, until in held:
            if until <= now:
                yield warn("leases", f"{name}: left by {owner}, which ended without giving it "
                           "up (expired: the next run takes it over)")  # fmt: skip
            else:
                yield ok("leases", f"{name}: {owner} is at it until {until:%H:%M:%S} UTC")
        for destination, state, count in waiting:
            what = ("an interrupted send the platform may have got" if state == "unknown"
                    else "out of retries")  # fmt: skip
            yield warn("ledger", f"{count:,} {state} row(s) of {destination} ({what}): "
                       f"revsync ledger show --destination {destination} --state {state}, then "
                       "revsync ledger settle")  # fmt: skip
        if not waiting:
            yield ok("ledger", "no row waits for a decision")

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
