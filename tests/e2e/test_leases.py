"""Leases on SQLite and PostgreSQL: one holder at a time, renewal, expiry, take-over."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine

from revsync.store.leases import Lease, LeaseLost, holder_is_dead, in_progress, run_owner

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
TTL = timedelta(minutes=10)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


def lease(engine: Engine, owner: str, clock: Clock, name: str = "destination:ga4") -> Lease:
    return Lease(engine, name, owner, TTL, clock)


def test_one_holder_until_it_drops_the_lease(engine: Engine) -> None:
    clock = Clock()
    first, second = lease(engine, "run 1", clock), lease(engine, "run 2", clock)
    assert first.take() is None
    assert first.take() is None  # taking it again while holding it
    assert second.take() == "run 1, until 2026-11-25 12:10:00 UTC"
    assert lease(engine, "run 2", clock, "destination:meta").take() is None  # another name
    clock.now += timedelta(minutes=9)
    with engine.begin() as conn:
        first.renew(conn)
    clock.now += timedelta(minutes=9)  # 18 minutes after taking it, 9 after the renewal
    assert second.take() == "run 1, until 2026-11-25 12:19:00 UTC"
    first.drop()
    assert second.take() is None
    first.drop()  # not the holder any more: nothing happens
    assert first.take() == "run 2, until 2026-11-25 12:28:00 UTC"


def test_an_expired_lease_is_taken_over_and_the_old_holder_cannot_commit(engine: Engine) -> None:
    clock = Clock()
    dead, next_run = lease(engine, "run 1", clock), lease(engine, "run 2", clock)
    assert dead.take() is None
    clock.now += TTL
    assert next_run.take() is None  # expired at exactly its time to live
    with (
        pytest.raises(LeaseLost, match="destination:ga4: another run took over"),
        engine.begin() as conn,
    ):
        dead.renew(conn)
    with engine.begin() as conn:
        next_run.renew(conn)


def race(engine: Engine, name: str, takers: int) -> dict[int, str | None]:
    """``takers`` threads taking the lease ``name`` at once: what each ``take`` returned."""
    clock = Clock()
    barrier = threading.Barrier(takers)
    results: dict[int, str | None] = {}
    errors: list[BaseException] = []

    def take(i: int) -> None:
        try:
            barrier.wait()
            results[i] = lease(engine, f"run {i}", clock, name).take()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=take, args=(i,)) for i in range(takers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    return results


def test_concurrent_takers_get_it_once(engine: Engine) -> None:
    for round_ in range(5):
        results = race(engine, f"source:crm-{round_}", 6)
        winners = [i for i, holder in results.items() if holder is None]
        assert len(winners) == 1, results
        assert {holder for holder in results.values() if holder} == {
            f"run {winners[0]}, until 2026-11-25 12:10:00 UTC"
        }


def _owner_of(process: subprocess.Popen[bytes]) -> str:
    """The owner string a run in ``process`` would write (its PID and start time)."""
    start = Path(f"/proc/{process.pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    return f"run 7 on {socket.gethostname()} (pid {process.pid}, start {start})"


def test_a_dead_runs_lease_on_this_host_is_taken_over_at_once(engine: Engine) -> None:
    """A run restarted right after a crash must not wait out the dead run's lease: the
    holder is provably gone (same host, its process ended)."""
    clock = lambda: T0  # noqa: E731
    worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        alive = _owner_of(worker)
        assert lease(engine, alive, clock).take() is None
        assert lease(engine, "run 8 on this host", clock).take() is not None  # alive: held
    finally:
        worker.kill()
        worker.wait()
    assert holder_is_dead(alive)
    assert lease(engine, "run 8 on this host", clock).take() is None  # taken over at once
    # A run on another host is never known dead: its lease is waited out.
    assert lease(engine, "run 9 elsewhere", clock, "source:crm").take() is None
    assert not holder_is_dead("run 9 on another-host (pid 1, start 5)")


def test_a_lease_an_ended_run_of_this_process_kept_is_taken_over_at_once(engine: Engine) -> None:
    """A worker's run that lost the store (a PostgreSQL restart) could not give its leases
    up; the worker's next run, in the same process, must not wait them out."""
    clock = lambda: T0  # noqa: E731
    earlier, later = run_owner(41), run_owner(42)
    with in_progress(41):
        assert lease(engine, earlier, clock).take() is None
        assert not holder_is_dead(earlier)
        assert lease(engine, later, clock).take() is not None  # still running: held
    assert holder_is_dead(earlier)
    assert lease(engine, later, clock).take() is None


def test_a_run_that_others_leave_nothing_to_do_says_so(engine: Engine, tmp_path: Path) -> None:
    from tests.e2e.test_sync import NOW, one_won_deal, run

    config = one_won_deal(engine, tmp_path)
    names = ["source:crm", "destination:gads", "destination:ga4", "destination:meta"]
    for name in names:  # another live run, on another host, holds everything
        assert Lease(engine, name, "run 99 on elsewhere (pid 7)", TTL, lambda: NOW).take() is None
    summary = run(engine, config, NOW + timedelta(minutes=1))
    assert summary.status == "busy" and sum(summary.planned.values()) == 0
    assert "nothing done" in summary.warnings[-1]


def test_the_heartbeat_works_in_its_runs_logging_context() -> None:
    """Its log lines (a renewal that failed) carry the run's ID like the run's own."""
    import threading

    from sqlalchemy.exc import OperationalError

    from revsync import logs
    from revsync.store.leases import Heartbeat

    seen: list[int | None] = []
    tried = threading.Event()

    class GoneStore:
        """A lease whose store is unreachable: it notes the run it was renewed for."""

        name = "source:crm"

        @property
        def engine(self) -> object:
            seen.append(logs.current_run())
            tried.set()
            raise OperationalError("renew", {}, Exception("store gone"))

    with logs.in_run(7):
        heartbeat = Heartbeat([GoneStore()], timedelta(seconds=0.03)).start()  # type: ignore[list-item]
    assert tried.wait(5)
    heartbeat.stop()
    assert seen[0] == 7
