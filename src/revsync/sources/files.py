"""A CRM export as a source: CSV or JSONL, one row per deal and contact.

Columns: ``deal_id`` (required), ``status`` (won/lost/open) or ``stage`` with the
mapping's ``won_stages``, ``amount``, ``currency``, ``close_date`` (a date, placed at
the mapping's ``close_time`` in its ``timezone``, or a date-time with offset),
``modified_at``, ``pipeline``, ``owner``, ``account_id`` (the customer), ``created_at``,
``stage_history`` (the CRM's record of the stages entered: ``Stage@date-time;…``);
per contact ``contact_id``, ``email``, ``phone``, ``is_primary``; click IDs written on
the CRM record: ``gclid``, ``gbraid``, ``wbraid``, ``fbclid``, ``ga_client_id``. Column
names are case-insensitive; of the other columns only those the mapping's ``fields``
names are kept (as deal fields), the rest is never stored.

A row that cannot be read, or a deal with a bad value, is quarantined with its row number
and the rest goes on. Rows of one deal that disagree on the deal's own columns are
versions: the newest ``modified_at`` wins and the older are quarantined; without a newest,
the deal is quarantined. Amounts are finite, at most ``max_amount`` and rounded to the
currency's minor unit; a won deal worth 0 or closing after the run's time is quarantined.
"""

from __future__ import annotations

import csv
import json
import math
from collections import OrderedDict
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
from revsync.errors import ConfigError, TransientError
from revsync.privacy import mask_text
from revsync.rows import (
    RowError,
    boolean,
    date_or_timestamp,
    decimal,
    parse_timestamp,
    read_rows,
    shown,
    text,
    timestamp,
)
from revsync.sources.base import DealPage, checked_amount, place_date, unsendable_won
from revsync.sources.file_spool import ID_LIMIT, Spool, deal_id_of, scan

if TYPE_CHECKING:
    from revsync.checks import CheckResult

PAGE_SIZE = 1_000
_HASHES_KEPT = 10_000
_KNOWN = {
    "deal_id", "status", "stage", "amount", "currency", "close_date", "modified_at",
    "pipeline", "owner", "contact_id", "email", "phone", "is_primary", "gclid", "gbraid",
    "wbraid", "fbclid", "ga_client_id", "account_id", "created_at", "stage_history",
}  # fmt: skip


def close_moment(value: date | datetime, config: FileSource, now: datetime) -> datetime:
    """A CRM close date or date-time as UTC (a date: see ``sources.base.place_date``)."""
    if isinstance(value, datetime):
        return value.astimezone(UTC)
    return place_date(value, config.timezone or "UTC", config.close_time, now)


@dataclass
class _Version:
    """The rows of one deal that agree on its deal-level columns."""

    rows: list[int]
    header: dict[str, Any]
    contacts: dict[str, Contact] = field(default_factory=dict)
    problems: list[Quarantined] = field(default_factory=list)


_DEAL_COLUMNS = ("status", "stage", "amount", "currency", "close_date", "modified_at",
                 "pipeline", "owner", "account_id", "created_at", "stage_history")  # fmt: skip
_TEXT_LIMIT = 255  # stage, pipeline, owner: longer values are cut


def _plain(value: Any) -> str:
    return "" if value is None else value.strip() if isinstance(value, str) else repr(value)


class FileDealSource:
    """Reads a deals export; incremental on ``modified_at`` with the overlap window."""

    def __init__(self, config: FileSource, default_phone_region: str | None = None) -> None:
        self.name = config.name
        self.config = config
        self.default_phone_region = default_phone_region
        self._hashes: OrderedDict[tuple[str | None, str | None], PersonHashes | Exception] = (
            OrderedDict()
        )

    def pages(self, watermark: str | None, now: datetime) -> Iterator[DealPage]:
        """Pages of deals changed since the watermark (less the overlap), in
        (modified_at, id) order; unchanged deals cost one read of their rows and nothing
        more (``file_spool``)."""
        since = None
        if watermark:
            since = datetime.fromisoformat(watermark) - timedelta(
                minutes=self.config.overlap_minutes
            )
        size = PAGE_SIZE
        for _attempt in range(3):  # the two reads must see one and the same export
            stamp = _stamp(self.config.path)
            found = scan(self.config.path)
            order = found.ordered(since, now)
            problems = [self._problem(f"row {n}", name, why, n) for n, name, why in found.bad_rows]
            if not order:
                yield DealPage(deals=(), quarantined=tuple(problems), watermark=watermark)
                return
            places = {deal_id: (rank // size, rank) for rank, (_, deal_id) in enumerate(order)}
            del order
            spool = Spool(self.config.path, places, one_page=len(places) <= size)
            if _stamp(self.config.path) == stamp:
                break
            spool.close()
        else:
            raise TransientError(f"{self.config.path}: the export kept changing while read")
        try:
            for page in range(math.ceil(len(places) / size)):
                deals = []
                for deal_id, versions in self._drafts(spool.page(page)).items():
                    deal = self._deal(deal_id, versions, now, problems)
                    if deal is not None and (since is None or deal.modified_at >= since):
                        deals.append(deal)
                deals.sort(key=lambda d: (d.modified_at, d.id))
                if deals:
                    watermark = deals[-1].modified_at.isoformat()
                yield DealPage(deals=tuple(deals), quarantined=tuple(problems),
                               watermark=watermark)  # fmt: skip
                problems = []
        finally:
            spool.close()

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

    def _drafts(
        self, rows: Iterator[tuple[int, dict[str, Any]]]
    ) -> dict[str, dict[tuple[str, ...], _Version]]:
        """One page's rows (each with a valid ``deal_id``) grouped into versions per deal."""
        drafts: dict[str, dict[tuple[str, ...], _Version]] = {}
        kept = tuple(name.lower() for name in self.config.fields)
        for number, row in rows:
            deal_id = deal_id_of(row)
            key = tuple(_plain(row.get(name)) for name in (*_DEAL_COLUMNS, *kept))
            versions = drafts.setdefault(deal_id, {})
            if versions and not any(key):  # a contact row that leaves the deal's columns blank
                key = next(iter(versions))
            version = versions.setdefault(key, _Version([], row))
            version.rows.append(number)
            self._contact(row, number, version)
        return drafts

    def _hash(self, email: str | None, phone: str | None) -> PersonHashes:
        """``hash_person``, once per distinct email and phone among the last
        ``_HASHES_KEPT`` (a contact on several deals or rows is hashed once)."""
        key = (email, phone)
        found = self._hashes.get(key)
        if found is None:
            try:
                found = hash_person(email, phone, self.default_phone_region)
            except InvalidIdentifier as exc:
                found = exc
            self._hashes[key] = found
            if len(self._hashes) > _HASHES_KEPT:
                self._hashes.popitem(last=False)
        else:
            self._hashes.move_to_end(key)
        if isinstance(found, Exception):
            raise found
        return found

    def _contact(self, row: dict[str, Any], number: int, version: _Version) -> None:
        try:
            contact_id = text(row, "contact_id")
            if contact_id is not None and len(contact_id) > ID_LIMIT:
                raise RowError("contact_id", f"is longer than {ID_LIMIT} characters")
        except RowError as exc:
            version.problems.append(self._problem(f"row {number}", exc.field, str(exc), number))
            return
        if contact_id is None:
            return
        problem = None
        try:
            hashes = self._hash(text(row, "email"), text(row, "phone"))
        except (InvalidIdentifier, RowError) as exc:
            name, _, reason = str(exc).partition(": ")
            problem = (name, reason)
            hashes = PersonHashes()
        if problem is not None:
            version.problems.append(
                Quarantined("contact", contact_id, *problem, self.name, {"row": number})
            )
        try:
            clicks = _click_ids(row)
            primary = bool(boolean(row, "is_primary"))
        except RowError as exc:
            version.problems.append(
                Quarantined(
                    "contact", contact_id, exc.field, mask_text(exc.reason), self.name,
                    {"row": number},
                )
            )  # fmt: skip
            clicks, primary = ClickIds(), False
        version.contacts[contact_id] = Contact(contact_id, hashes, primary, clicks)

    def _winner(
        self, deal_id: str, versions: dict[tuple[str, ...], _Version], problems: list[Quarantined]
    ) -> _Version | None:
        """The one version of a deal to use: the newest ``modified_at``; the older ones
        are quarantined. Versions that tie quarantine the deal."""
        if len(versions) == 1:
            return next(iter(versions.values()))
        dated: list[tuple[datetime | None, _Version]] = []
        for version in versions.values():
            try:
                dated.append((timestamp(version.header, "modified_at"), version))
            except RowError:
                dated.append((None, version))
        newest = max((moment for moment, _ in dated if moment is not None), default=None)
        top = [version for moment, version in dated if moment == newest]
        if len(top) > 1:
            first, second = top[0], top[1]
            differ = [
                name for name in sorted({*first.header, *second.header})
                if name not in ("contact_id", "email", "phone", "is_primary")
                and _plain(first.header.get(name)) != _plain(second.header.get(name))
            ]  # fmt: skip
            reason = (
                f"rows {first.rows[0]} and {second.rows[0]} disagree on {', '.join(differ)} "
                "with no newer modified_at; the deal is left out"
            )
            field_name = differ[0] if differ else "deal_id"
            problems.append(self._problem(deal_id, field_name, reason, first.rows[0]))
            return None
        winner = top[0]
        for _, version in dated:
            if version is not winner:
                reason = (f"row {version.rows[0]} is an older version of this deal than row "
                          f"{winner.rows[0]} (modified_at); ignored")  # fmt: skip
                problems.append(self._problem(deal_id, "modified_at", reason, version.rows[0]))
        return winner

    def _deal(
        self,
        deal_id: str,
        versions: dict[tuple[str, ...], _Version],
        now: datetime,
        problems: list[Quarantined],
    ) -> Deal | None:
        version = self._winner(deal_id, versions, problems)
        if version is None:
            return None
        row = version.header
        problems.extend(version.problems)
        try:
            status = self._status(row)
            amount = decimal(row, "amount")
            if status is DealStatus.WON and amount is None:
                raise RowError("amount", "a won deal needs an amount")
            currency = (text(row, "currency") or "").upper()
            if currency not in ISO_4217:
                raise RowError(
                    "currency", f"{(currency or '(empty)')[:20]} is not an ISO 4217 code"
                )
            if amount is not None:
                amount = checked_amount(amount, currency, self.config.max_amount)
            closed = date_or_timestamp(row, "close_date")
            if status is DealStatus.WON and closed is None:
                raise RowError("close_date", "a won deal needs a close date")
            unsendable = unsendable_won(
                status, amount or Decimal(0), closed, self.config.timezone or "UTC", now
            )
            if unsendable is not None:
                raise unsendable
            modified = timestamp(row, "modified_at") or now
            clicks = (
                _click_ids(row)
                if "contact_id" not in row or not row.get("contact_id")
                else ClickIds()
            )
            fields = self._fields(row)
            stage, pipeline, owner = (_cut(text(row, n)) for n in ("stage", "pipeline", "owner"))
            account = text(row, "account_id")
            if account is not None and len(account) > 64:
                raise RowError("account_id", "is longer than 64 characters")
            created = timestamp(row, "created_at")
            history = _stage_history(row)
        except RowError as exc:
            problems.append(self._problem(deal_id, exc.field, str(exc), version.rows[0]))
            return None
        contacts = sorted(version.contacts.values(), key=lambda c: (not c.is_primary, c.crm_id))
        return Deal(
            source=self.name,
            id=deal_id,
            status=status,
            amount=amount if amount is not None else Decimal(0),
            currency=currency,
            close_at=close_moment(closed, self.config, now) if closed is not None else None,
            modified_at=modified,
            stage=stage,
            pipeline=pipeline,
            owner=owner,
            contacts=tuple(contacts),
            click_ids=clicks,
            fields=fields,
            account_id=account,
            created_at=created,
            stage_history=history,
        )

    def _fields(self, row: dict[str, Any]) -> dict[str, str]:
        """The extra columns the mapping names (case-insensitive), under its spelling."""
        fields = {}
        for name in self.config.fields:
            value = row.get(name.lower())
            if isinstance(value, list | dict):
                raise RowError(name.lower(), "must be text, not a JSON array or object")
            if value is not None and value != "":
                fields[name] = value.strip() if isinstance(value, str) else json.dumps(value)
        return fields

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
        reason = mask_text(reason.removeprefix(f"{field_name}: "))
        return Quarantined("deal", record, field_name, reason, self.name, {"row": number})


_NEEDED = ("deal_id", "amount", "currency", "close_date")
_MATCHABLE = frozenset(
    {"contact_id", "email", "phone", "gclid", "gbraid", "wbraid", "fbclid", "ga_client_id"}
)


def _columns(path: Path) -> set[str]:
    """The header of a CSV, or the keys of a JSONL file's first 100 rows (folded)."""
    reader = read_rows(path)
    if reader.fmt == "csv":
        reader.close()
        return set(reader.columns)
    columns: set[str] = set()
    for number, row in reader:
        if isinstance(row, dict):
            columns |= set(row)
        if number >= 100:
            break
    return columns


def _stamp(path: Path) -> tuple[int, int, int]:
    """What changes when the export is rewritten or replaced (a file that cannot be read
    is refused by the read itself, with its reason)."""
    try:
        status = path.stat()
    except OSError:
        return 0, 0, 0
    return status.st_ino, status.st_size, status.st_mtime_ns


def _stage_history(row: dict[str, Any]) -> tuple[tuple[datetime, str], ...]:
    """``stage_history``: ``Stage@date-time`` entries separated by ``;``, in time order."""
    raw = text(row, "stage_history")
    entries = []
    for part in (raw or "").split(";"):
        if not part.strip():
            continue
        stage, at, moment = part.strip().rpartition("@")
        if not at or not stage.strip():
            raise RowError(
                "stage_history",
                f"{shown(part)}: each entry is a stage name, an at sign and an "
                "ISO 8601 date-time; entries are separated by semicolons",
            )
        entered = parse_timestamp("stage_history", moment.strip())
        entries.append((entered, stage.strip()[:_TEXT_LIMIT]))
    return tuple(sorted(entries))


def _cut(value: str | None) -> str | None:
    return value[:_TEXT_LIMIT] if value else value


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
