"""The long-running worker: one sync run per tick of a schedule until told to stop.

``revsync worker --every 15m`` or ``--cron "*/15 * * * *"`` (UTC). A run starts at each
tick; one that outlasts its interval is followed by the next at once (missed ticks are not
made up one by one). SIGTERM or SIGINT sets the stop event: the run in progress ends after
its page or batch (status ``stopped``), and the worker exits instead of waiting for the
next tick. A run that fails or finds a bad mapping file is logged and the worker waits for
the next tick: the mapping is read again for every run, so a fix needs no restart.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from croniter import croniter

from revsync.errors import ConfigError

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"^\s*(\d+)\s*([smhd])\s*$")


class Schedule(Protocol):
    def next_after(self, moment: datetime) -> datetime:
        """The first tick after ``moment`` (aware UTC)."""
        ...


@dataclass(frozen=True)
class Every:
    """A tick every ``interval``, counted from the start of the previous run."""

    interval: timedelta

    def next_after(self, moment: datetime) -> datetime:
        return moment + self.interval

    def __str__(self) -> str:
        left, parts = int(self.interval.total_seconds()), []
        for unit in "dhms":
            amount, left = divmod(left, _UNITS[unit])
            if amount:
                parts.append(f"{amount}{unit}")
        return f"every {' '.join(parts)}"


@dataclass(frozen=True)
class Cron:
    """Ticks of a five-field cron expression, in UTC."""

    expression: str

    def next_after(self, moment: datetime) -> datetime:
        following: datetime = croniter(self.expression, moment).get_next(datetime)
        return following

    def __str__(self) -> str:
        return f"cron {self.expression!r} (UTC)"


def schedule(every: str | None, cron: str | None) -> Schedule:
    """The schedule ``--every`` or ``--cron`` asks for; :class:`ConfigError` naming the
    option when neither, both, or a malformed one is given."""
    if (every is None) == (cron is None):
        raise ConfigError("give exactly one of --every (e.g. 15m) or --cron (e.g. '*/15 * * * *')")
    if every is not None:
        match = _DURATION.match(every)
        seconds = int(match[1]) * _UNITS[match[2]] if match else 0
        if seconds < 1:
            raise ConfigError(
                f"--every {every!r}: a whole number and a unit, s, m, h or d (e.g. 90s, 15m)"
            )
        return Every(timedelta(seconds=seconds))
    assert cron is not None
    if len(cron.split()) != 5 or not croniter.is_valid(cron):
        raise ConfigError(
            f"--cron {cron!r}: five fields, minute hour day month weekday (e.g. '*/15 * * * *')"
        )
    return Cron(cron)


SKIPPED = "skipped"  # what ``run_once`` returns when no run could start (a bad mapping)
_GIVE_UP_ON = {SKIPPED, "config_error", "failed"}


class GaveUp(Exception):
    """Runs failed ``max_failures`` times in a row: credentials or config need a human."""


def run_worker(
    run_once: Callable[[], str | None],
    plan: Schedule,
    stop: threading.Event,
    clock: Callable[[], datetime],
    max_failures: int = 0,
) -> int:
    """Call ``run_once`` at every tick of ``plan`` until ``stop`` is set; the number of
    runs that happened (``run_once`` returns the run's status, or ``SKIPPED``). The first
    run starts at once. With ``max_failures``, that many failed or skipped runs in a row
    raise ``GaveUp``."""
    runs = failures = 0
    next_start = clock()
    while not stop.is_set():
        wait = (next_start - clock()).total_seconds()
        if wait > 0 and stop.wait(wait):
            break
        started = clock()
        status = run_once()
        runs += status != SKIPPED
        failures = failures + 1 if status in _GIVE_UP_ON else 0
        if max_failures and failures >= max_failures:
            raise GaveUp(f"{failures} runs in a row failed or could not start")
        next_start = plan.next_after(started)
    return runs
