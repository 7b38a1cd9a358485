"""The ``DealSource`` protocol every CRM source implements."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from typing import Protocol
from zoneinfo import ZoneInfo

from revsync.config.mapping import ApiSource
from revsync.domain import Deal, Quarantined


@dataclass(frozen=True, slots=True)
class DealPage:
    """One page of deals read from a source.

    ``watermark`` is the position to resume from once this page is stored; the sync job
    advances the stored watermark only after the page's transaction commits.
    """

    deals: tuple[Deal, ...]
    quarantined: tuple[Quarantined, ...] = ()
    watermark: str | None = None
    budget_exhausted: bool = field(default=False)


class DealSource(Protocol):
    """Reads deals changed since a watermark, page by page."""

    name: str

    def pages(self, watermark: str | None, now: datetime) -> Iterator[DealPage]:
        """Yield pages of deals modified at or after ``watermark`` (minus the overlap)."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


def backoff_seconds(config: ApiSource, failures: int, at_least: float = 0.0) -> float:
    """The wait after ``failures`` failed tries: exponential from the initial wait, jittered
    down to half, at least ``at_least`` (a Retry-After), at most the configured cap."""
    backoff = config.retry_initial_wait_seconds * 2 ** (failures - 1)
    return min(max(random.uniform(backoff / 2, backoff), at_least), config.retry_max_wait_seconds)


END_OF_DAY = time(23, 59, 59)


def place_date(day: date, zone: str, close_time: time | None, now: datetime) -> datetime:
    """A date-only close as UTC: at ``close_time`` in ``zone`` (default: the end of that
    local day, so a click on the close day stays before the close), never later than
    ``now``."""
    local = datetime.combine(day, close_time or END_OF_DAY, tzinfo=ZoneInfo(zone))
    return min(local.astimezone(UTC), now)
