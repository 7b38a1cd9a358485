"""The worker's schedules and loop, on a fake clock."""

from __future__ import annotations

import re
import threading
from datetime import UTC, datetime, timedelta

import pytest

from revsync.errors import ConfigError
from revsync.sync.worker import Cron, Every, run_worker, schedule

T0 = datetime(2026, 11, 25, 12, 7, 30, tzinfo=UTC)


def test_schedules_from_the_command_line() -> None:
    assert schedule("15m", None) == Every(timedelta(minutes=15))
    assert schedule(" 90s ", None) == Every(timedelta(seconds=90))
    assert schedule("2h", None) == Every(timedelta(hours=2))
    assert (str(schedule("90s", None)), str(schedule("1d", None))) == ("every 1m 30s", "every 1d")
    assert schedule(None, "*/15 * * * *") == Cron("*/15 * * * *")
    assert Cron("*/15 * * * *").next_after(T0) == datetime(2026, 11, 25, 12, 15, tzinfo=UTC)
    assert Cron("0 3 * * *").next_after(T0) == datetime(2026, 11, 26, 3, 0, tzinfo=UTC)
    for every, cron, problem in [
        (None, None, "give exactly one of --every"),
        ("15m", "* * * * *", "give exactly one of --every"),
        ("0m", None, "--every '0m': a whole number and a unit"),
        ("15 minutes", None, "--every '15 minutes'"),
        ("1.5h", None, "--every '1.5h'"),
        (None, "61 * * * *", "--cron '61 * * * *': five fields"),
        (None, "* * * *", "--cron '* * * *': five fields"),
    ]:
        with pytest.raises(ConfigError, match=re.escape(problem)):
            schedule(every, cron)


class FakeTime(threading.Event):
    """A clock that moves only when the worker waits (``wait`` returns at once)."""

    def __init__(self) -> None:
        super().__init__()
        self.now = T0
        self.waits: list[float] = []

    def __call__(self) -> datetime:
        return self.now

    def wait(self, timeout: float | None = None) -> bool:
        assert timeout is not None
        self.waits.append(timeout)
        self.now += timedelta(seconds=timeout)
        return self.is_set()


def test_runs_on_each_tick_and_a_long_run_is_followed_at_once() -> None:
    time = FakeTime()
    starts: list[datetime] = []
    durations = iter([timedelta(minutes=2), timedelta(minutes=40), timedelta(minutes=1)])

    def once() -> None:
        starts.append(time.now)
        time.now += next(durations)
        if len(starts) == 3:
            time.set()  # SIGTERM during the third run

    runs = run_worker(once, Every(timedelta(minutes=15)), time, time)

    assert runs == 3
    # 12:07:30 at once; 12:22:30 (15 min after the first start); the 40-minute run
    # overran its tick, so the third starts as it ends (13:02:30), not at 12:37 and 12:52.
    assert starts == [T0, T0 + timedelta(minutes=15), T0 + timedelta(minutes=55)]
    assert time.waits == [13 * 60]


def test_a_stop_while_waiting_ends_the_wait() -> None:
    time = FakeTime()

    def once() -> None:
        time.now += timedelta(seconds=5)

    original = time.wait

    def stopped_wait(timeout: float | None = None) -> bool:
        time.set()  # SIGTERM arrives while the worker waits for the next tick
        return original(timeout)

    time.wait = stopped_wait  # type: ignore[method-assign]
    assert run_worker(once, Cron("*/15 * * * *"), time, time) == 1
    # the next tick, 12:15, after a first run that ended at 12:07:35
    assert time.waits == [445.0]


def test_exit_codes_of_a_run() -> None:
    from revsync.cli.run import exit_code
    from revsync.sync.summary import RunSummary

    codes = {status: exit_code(RunSummary(status=status))
             for status in ("ok", "partial", "failed", "config_error", "stopped")}  # fmt: skip
    assert codes == {"ok": 0, "partial": 3, "failed": 1, "config_error": 2, "stopped": 4}
