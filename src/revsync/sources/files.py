"""A CRM export as a source: CSV or JSONL, one row per deal and contact.

Columns: ``deal_id`` (required), ``status`` (won/lost/open) or ``stage`` with the mapping's
``won_stages``, ``amount``, ``currency``, ``close_date`` (a date, placed at the mapping's
``close_time`` in its ``timezone``, or a date-time with offset), ``modified_at``,
``pipeline``, ``owner``; per contact ``contact_id``, ``email``, ``phone``, ``is_primary``;
click IDs written on the CRM record: ``gclid``, ``gbraid``, ``wbraid``, ``fbclid``,
``ga_client_id``. Extra columns are kept as deal fields.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from revsync.collect.parsing import ParseError, click_id, ga_client_id
from revsync.config.mapping import FileSource
from revsync.currencies import ISO_4217
from revsync.destinations.pii import InvalidIdentifier, hash_person
from revsync.domain import ClickIds, Contact, Deal, DealStatus, PersonHashes, Quarantined
from revsync.errors import ConfigError
from revsync.rows import (
    RowError,
    boolean,
    date_or_timestamp,
    decimal,
    file_format,
    read_rows,
    text,
    timestamp,
)
from revsync.sources.base import DealPage, place_date

if TYPE_CHECKING:
    from revsync.checks import CheckResult

PAGE_SIZE = 1_000
_KNOWN = {
    "deal_id", "status", "stage", "amount", "currency", "close_date", "modified_at",
    "pipeline", "owner", "contact_id", "email", "phone", "is_primary", "gclid", "gbraid",
    "wbraid", "fbclid", "ga_client_id",
}  # fmt: skip


def close_moment(value: date | datetime, config: FileSource, now: datetime) -> datetime:
    """A CRM close date or date-time as UTC (a date: see ``sources.base.place_date``)."""
    if isinstance(value, datetime):
        return value.astimezone(UTC)
    return place_date(value, config.timezone or "UTC", config.close_time, now)


@dataclass
class _DealDraft:
    first_row: int
    header: dict[str, Any]
    contacts: dict[str, Contact] = field(default_factory=dict)
    problems: list[Quarantined] = field(default_factory=list)


class FileDealSource:
    """Reads a deals export; incremental on ``modified_at`` with the overlap window."""

    def __init__(self, config: FileSource, default_phone_region: str | None = None) -> None:
        self.name = config.name
        self.config = config
        self.default_phone_region = default_phone_region

    def pages(self, watermark: str | None, now: datetime) -> Iterator[DealPage]:
        since = None
        if watermark:
            since = datetime.fromisoformat(watermark) - timedelta(
                minutes=self.config.overlap_minutes
            )
        deals: list[Deal] = []
        problems: list[Quarantined] = []
        drafts, unreadable = self._drafts()
        problems.extend(unreadable)
        for deal_id, draft in drafts.items():
            deal = self._deal(deal_id, draft, now, problems)
            if deal is not None and (since is None or deal.modified_at >= since):
                deals.append(deal)
        deals.sort(key=lambda d: (d.modified_at, d.id))
        if not deals:
            yield DealPage(deals=(), quarantined=tuple(problems), watermark=watermark)
            return
        for start in range(0, len(deals), PAGE_SIZE):
            page = tuple(deals[start : start + PAGE_SIZE])
            yield DealPage(
                deals=page,
                quarantined=tuple(problems) if start == 0 else (),
                watermark=page[-1].modified_at.isoformat(),
            )

    def close(self) -> None:
        """Nothing to release."""

    def check(self) -> Iterator[CheckResult]:
        """``revsync doctor``: the file is readable and its header has the needed columns."""
        from revsync.checks import fail, ok, warn

        path = self.config.path
        try:
            columns = _columns(path)
        except (ConfigError, OSError, UnicodeDecodeError, csv.Error) as exc:
            text = exc.strerror if isinstance(exc, OSError) else str(exc)
            yield fail("file readable", f"{path}: {text}")
            return
        yield ok("file readable", f"{path} ({path.stat().st_size:,} bytes)")
        missing = [c for c in _NEEDED if c not in columns]
        if "status" not in columns and "stage" not in columns:
            missing.append("status (or stage)")
        if missing:
            yield fail("columns", f"missing {', '.join(missing)}; have {', '.join(columns)}")
        elif "status" not in columns and not self.config.won_stages:
            yield fail("columns", "no status column and no won_stages: no deal counts as won")
        elif not columns & _MATCHABLE:
            yield fail("columns", f"none of {', '.join(sorted(_MATCHABLE))}: nothing to match on")
        elif "modified_at" not in columns:
            yield warn("columns", "no modified_at: every run re-reads every deal")
        else:
            keys = ", ".join(sorted(columns & _MATCHABLE))
            yield ok("columns", f"needed columns present; matching on {keys}")

    def _drafts(self) -> tuple[dict[str, _DealDraft], list[Quarantined]]:
        drafts: dict[str, _DealDraft] = {}
        problems: list[Quarantined] = []
        for number, row in read_rows(self.config.path):
            if isinstance(row, RowError):
                problems.append(self._problem(f"row {number}", row.field, str(row), number))
                continue
            deal_id = text(row, "deal_id")
            if deal_id is None:
                problems.append(self._problem(f"row {number}", "deal_id", "is required", number))
                continue
            draft = drafts.setdefault(deal_id, _DealDraft(first_row=number, header=row))
            contact_id = text(row, "contact_id")
            if contact_id is None:
                continue
            try:
                hashes = hash_person(
                    text(row, "email"), text(row, "phone"), self.default_phone_region
                )
            except InvalidIdentifier as exc:
                name, _, reason = str(exc).partition(": ")
                draft.problems.append(
                    Quarantined("contact", contact_id, name, reason, self.name, {"row": number})
                )
                hashes = PersonHashes()
            try:
                clicks = _click_ids(row)
                primary = bool(boolean(row, "is_primary"))
            except RowError as exc:
                draft.problems.append(
                    Quarantined(
                        "contact", contact_id, exc.field, str(exc), self.name, {"row": number}
                    )
                )
                clicks, primary = ClickIds(), False
            draft.contacts[contact_id] = Contact(contact_id, hashes, primary, clicks)
        return drafts, problems

    def _deal(
        self, deal_id: str, draft: _DealDraft, now: datetime, problems: list[Quarantined]
    ) -> Deal | None:
        row = draft.header
        problems.extend(draft.problems)
        try:
            status = self._status(row)
            amount = decimal(row, "amount")
            if status is DealStatus.WON and amount is None:
                raise RowError("amount", "a won deal needs an amount")
            if amount is not None and amount < 0:
                raise RowError("amount", f"{amount} is negative")
            currency = (text(row, "currency") or "").upper()
            if currency not in ISO_4217:
                raise RowError("currency", f"{currency or '(empty)'} is not an ISO 4217 code")
            closed = date_or_timestamp(row, "close_date")
            if status is DealStatus.WON and closed is None:
                raise RowError("close_date", "a won deal needs a close date")
            modified = timestamp(row, "modified_at") or now
            clicks = (
                _click_ids(row)
                if "contact_id" not in row or not row.get("contact_id")
                else ClickIds()
            )
        except RowError as exc:
            problems.append(self._problem(deal_id, exc.field, str(exc), draft.first_row))
            return None
        contacts = sorted(draft.contacts.values(), key=lambda c: (not c.is_primary, c.crm_id))
        return Deal(
            source=self.name,
            id=deal_id,
            status=status,
            amount=amount if amount is not None else Decimal(0),
            currency=currency,
            close_at=close_moment(closed, self.config, now) if closed is not None else None,
            modified_at=modified,
            stage=text(row, "stage"),
            pipeline=text(row, "pipeline"),
            owner=text(row, "owner"),
            contacts=tuple(contacts),
            click_ids=clicks,
            fields={k: str(v) for k, v in row.items() if k not in _KNOWN and v not in (None, "")},
        )

    def _status(self, row: dict[str, Any]) -> DealStatus:
        raw = text(row, "status")
        if raw is not None:
            try:
                return DealStatus(raw.lower())
            except ValueError:
                raise RowError("status", f"{raw!r} is not won, lost or open") from None
        stage = text(row, "stage")
        if stage is None:
            raise RowError("status", "give a status (won/lost/open) or a stage")
        return DealStatus.WON if stage in self.config.won_stages else DealStatus.OPEN

    def _problem(self, record: str, field_name: str, reason: str, number: int) -> Quarantined:
        reason = reason.removeprefix(f"{field_name}: ")
        return Quarantined("deal", record, field_name, reason, self.name, {"row": number})


_NEEDED = ("deal_id", "amount", "currency", "close_date")
_MATCHABLE = frozenset(
    {"contact_id", "email", "phone", "gclid", "gbraid", "wbraid", "fbclid", "ga_client_id"}
)


def _columns(path: Path) -> set[str]:
    """The header of a CSV, or the keys of a JSONL file's first 100 rows."""
    fmt = file_format(path)
    with path.open(encoding="utf-8-sig", newline="") as handle:
        if fmt == "csv":
            return {c.strip() for c in next(csv.reader(handle), [])}
    columns: set[str] = set()
    for number, row in read_rows(path):
        if isinstance(row, dict):
            columns |= set(row)
        if number >= 100:
            break
    return columns


def _click_ids(row: dict[str, Any]) -> ClickIds:
    try:
        values = {
            name: click_id(name, text(row, name))
            for name in ("gclid", "gbraid", "wbraid", "fbclid")
        }
        client = ga_client_id(text(row, "ga_client_id"))
    except ParseError as exc:
        raise RowError(str(exc).split(" ")[0], str(exc)) from None
    return ClickIds(ga_client_id=client, **values)
