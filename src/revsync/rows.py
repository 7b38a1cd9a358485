"""Read CSV or JSONL files row by row with row numbers, and write rejected rows aside.

A row that cannot even be parsed (bad JSON, wrong column count) is reported, never fatal.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from types import TracebackType
from typing import Any, TextIO

from revsync.errors import ConfigError


class RowError(ValueError):
    """A bad field in a row: ``field`` names it, the message says what is wrong."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


def file_format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return "csv"
    if suffix in (".jsonl", ".ndjson"):
        return "jsonl"
    raise ConfigError(f"{path}: unknown file type {suffix!r}; use .csv or .jsonl")


def read_rows(path: Path) -> Iterator[tuple[int, dict[str, Any] | RowError]]:
    """Yield ``(row number, row)`` — or a ``RowError`` for a row that does not parse.

    CSV rows are numbered like a spreadsheet (the header is row 1); JSONL rows by line.
    """
    fmt = file_format(path)
    try:
        handle = path.open(encoding="utf-8-sig", newline="")
    except OSError as exc:
        raise ConfigError(f"{path}: {exc.strerror}") from None
    try:
        yield from _rows(handle, fmt)
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    except csv.Error as exc:
        raise ConfigError(f"{path}: unreadable CSV: {exc}") from None
    finally:
        handle.close()


def _rows(handle: TextIO, fmt: str) -> Iterator[tuple[int, dict[str, Any] | RowError]]:
    if fmt == "csv":
        reader = csv.DictReader(handle)
        for number, row in enumerate(reader, start=2):
            if None in row:
                yield number, RowError("(row)", "more values than header columns")
            elif any(v is None for v in row.values()):
                yield number, RowError("(row)", "fewer values than header columns")
            else:
                yield number, {k.strip(): v for k, v in row.items()}
        return
    for number, line in enumerate(handle, start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            yield number, RowError("(row)", f"invalid JSON: {exc.msg}")
            continue
        if not isinstance(value, dict):
            yield number, RowError("(row)", "a JSON object per line is expected")
        else:
            yield number, value


class RejectsWriter:
    """Writes rejected rows, with their row number and reason, next to the input format."""

    def __init__(self, path: Path, fmt: str) -> None:
        self.path = path
        self.fmt = fmt
        self.count = 0
        self._handle: TextIO | None = None
        self._csv: csv.DictWriter[str] | None = None

    def write(self, number: int, row: dict[str, Any] | None, error: str) -> None:
        record = {"_row": number, "_error": error, **{str(k): v for k, v in (row or {}).items()}}
        if self._handle is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._handle = self.path.open("w", encoding="utf-8", newline="")
        if self.fmt == "csv":
            if self._csv is None:
                self._csv = csv.DictWriter(
                    self._handle, fieldnames=list(record), extrasaction="ignore"
                )
                self._csv.writeheader()
            self._csv.writerow(record)
        else:
            self._handle.write(json.dumps(record, default=str) + "\n")
        self.count += 1

    def __enter__(self) -> RejectsWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._handle is not None:
            self._handle.close()


def text(row: dict[str, Any], name: str, *, required: bool = False) -> str | None:
    value = row.get(name)
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise RowError(name, "is required")
        return None
    return str(value).strip()


def timestamp(row: dict[str, Any], name: str, *, required: bool = False) -> datetime | None:
    """An ISO 8601 date-time with an offset (``Z`` allowed), as aware UTC."""
    value = text(row, name, required=required)
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise RowError(name, f"{value!r} is not an ISO 8601 date-time") from None
    if parsed.tzinfo is None:
        raise RowError(name, f"{value!r} has no UTC offset (add Z or +hh:mm)")
    return parsed.astimezone(UTC)


def date_or_timestamp(row: dict[str, Any], name: str) -> date | datetime | None:
    """A plain date (``2026-11-02``) or an ISO 8601 date-time with offset."""
    value = text(row, name)
    if value is None:
        return None
    if len(value) == 10:
        try:
            return date.fromisoformat(value)
        except ValueError:
            raise RowError(name, f"{value!r} is not a date (YYYY-MM-DD)") from None
    return timestamp(row, name)


def decimal(row: dict[str, Any], name: str) -> Decimal | None:
    value = text(row, name)
    if value is None:
        return None
    try:
        amount = Decimal(value.replace(",", "")) if isinstance(value, str) else Decimal(value)
    except InvalidOperation:
        raise RowError(name, f"{value!r} is not a number") from None
    if not amount.is_finite():
        raise RowError(name, f"{value!r} is not a finite number")
    return amount


def boolean(row: dict[str, Any], name: str) -> bool | None:
    value = row.get(name)
    if isinstance(value, bool):
        return value
    raw = text(row, name)
    if raw is None:
        return None
    lowered = raw.lower()
    if lowered in ("true", "1", "yes", "y", "granted"):
        return True
    if lowered in ("false", "0", "no", "n", "denied"):
        return False
    raise RowError(name, f"{raw!r} is not true/false (or granted/denied)")
