"""The ``DealSource`` protocol every CRM source implements."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time
from decimal import ROUND_HALF_UP, Decimal
from typing import Protocol
from zoneinfo import ZoneInfo

from revsync.config.mapping import ApiSource
from revsync.currencies import minor_units
from revsync.domain import Deal, DealStatus, Quarantined
from revsync.rows import RowError


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


def checked_amount(amount: Decimal, currency: str, limit: int | Decimal) -> Decimal:
    """``amount`` rounded (half up) to ``currency``'s minor unit; ``RowError`` unless it is
    finite, not negative and at most ``limit``."""
    if not amount.is_finite():
        raise RowError("amount", f"{amount} is not a finite number")
    if amount < 0:
        raise RowError("amount", f"{amount:.6g} is negative")
    if amount > limit:
        raise RowError(
            "amount", f"{amount:.6g} is above the largest believable amount ({limit:,}; max_amount)"
        )
    return amount.quantize(Decimal(1).scaleb(-minor_units(currency)), rounding=ROUND_HALF_UP)


def unsendable_won(
    status: DealStatus, amount: Decimal, closed: date | datetime | None, zone: str, now: datetime
) -> RowError | None:
    """Why a won deal must not be uploaded (worth 0, or closing after the run's time in the
    account's ``zone``), or ``None``."""
    if status is not DealStatus.WON:
        return None
    if amount == 0:
        return RowError("amount", "a won deal worth 0 is not uploaded")
    if isinstance(closed, datetime):
        future = closed > now
    else:
        future = closed is not None and closed > now.astimezone(ZoneInfo(zone)).date()
    if future:
        when = closed.isoformat() if closed is not None else ""
        return RowError("close_date", f"{when} is after the run's time; a won deal is uploaded "
                        "once it has closed")  # fmt: skip
    return None


def vetted(page: DealPage, limit: int | Decimal, now: datetime) -> DealPage:
    """``page`` with each amount rounded to its currency's minor unit. A won deal whose
    amount is not believable, worth 0 or closing after ``now`` is quarantined (never
    uploaded); an open or lost deal keeps no unbelievable amount."""
    deals, problems = [], list(page.quarantined)
    for deal in page.deals:
        won = deal.status is DealStatus.WON
        try:
            if deal.amount is not None:
                amount = checked_amount(deal.amount, deal.currency, limit)
                if amount.as_tuple() != deal.amount.as_tuple():  # not already rounded so
                    deal = replace(deal, amount=amount)
                if problem := unsendable_won(deal.status, amount, deal.close_at, "UTC", now):
                    raise problem
        except RowError as bad:
            if won:
                problems.append(Quarantined("deal", deal.id, bad.field, bad.reason, deal.source))
                continue
            deal = replace(deal, amount=None)
        deals.append(deal)
    return replace(page, deals=tuple(deals), quarantined=tuple(problems))
