"""Read CSV or JSONL files row by row with row numbers, and write rejected rows aside.

One rule for every reader: a row that cannot be read (bad JSON, wrong column count, a byte
that is not UTF-8, a NUL, a field over 128 KiB) comes out as a ``RowError`` with its row
number and the rest of the file goes on. A whole file is refused (``ConfigError``) only
when it cannot be read at all — missing, a directory, UTF-16/32, an unreadable CSV header
— and that is known before the first row is yielded. Column names are case-insensitive
(folded to lowercase).
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import math
import re
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from revsync.errors import ConfigError
from revsync.privacy import mask_row, mask_text, open_private

MAX_FIELD_CHARS = 128 * 1024
_CSV_LIMIT = 16 * 1024 * 1024  # the csv module's own cap; longer fields are ours to reject
_BAD_CHAR = re.compile("[\x00\ud800-\udfff]")
_EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
_LATEST = datetime(3000, 1, 1, tzinfo=UTC)
_WIDE_BOMS = (codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE, codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)


class RowError(ValueError):
    """A bad field in a row: ``field`` names it, the message says what is wrong.

    ``content`` is what could be read of a row that did not parse (for the rejects file).
    """

    def __init__(self, field: str, message: str, content: dict[str, Any] | None = None) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.reason = message
        self.content = content


def file_format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return "csv"
    if suffix in (".jsonl", ".ndjson"):
        return "jsonl"
    raise ConfigError(f"{path}: unknown file type {suffix!r}; use .csv or .jsonl")


def shown(value: Any, limit: int = 60) -> str:
    """``repr`` of a value for a message, cut short."""
    text = value if isinstance(value, str) else str(value)
    return repr(text if len(text) <= limit else text[: limit - 1] + "…")


class RowReader:
    """``(row number, row or RowError)`` for each row of a CSV or JSONL file.

    Opening checks the file as a whole (and raises ``ConfigError``); ``columns`` is the CSV
    header (folded). CSV rows are numbered like a spreadsheet (the header is row 1), JSONL
    rows by line.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fmt = file_format(path)
        self.columns: list[str] = []
        if path.is_dir():
            raise ConfigError(f"{path}: is a directory, not a file")
        try:
            raw = path.open("rb")
        except OSError as exc:
            raise ConfigError(f"{path}: {exc.strerror or exc}") from None
        try:
            head = raw.read(1024)
            raw.seek(0)
        except OSError as exc:
            raw.close()
            raise ConfigError(f"{path}: {exc.strerror or exc}") from None
        if head.startswith(_WIDE_BOMS) or head.count(b"\x00") * 4 > len(head):
            raw.close()
            raise ConfigError(f"{path}: not UTF-8 text (UTF-16 or UTF-32?); save it as UTF-8")
        self._handle = io.TextIOWrapper(
            raw, encoding="utf-8-sig", errors="surrogateescape", newline=""
        )
        self._consumed: list[str] = []
        self._csv: Iterator[list[str]] | None = None
        if self.fmt == "csv":
            self._open_csv()

    def _lines(self) -> Iterator[str]:
        for line in self._handle:
            self._consumed.append(line)
            yield line

    def _open_csv(self) -> None:
        if csv.field_size_limit() < _CSV_LIMIT:
            csv.field_size_limit(_CSV_LIMIT)
        self._csv = csv.reader(self._lines())
        try:
            header = next(self._csv, [])
        except (csv.Error, OSError) as exc:
            self.close()
            raise ConfigError(f"{self.path}: unreadable CSV header: {exc}") from None
        bad = next((name for name in header if _BAD_CHAR.search(name)), None)
        if bad is not None:
            self.close()
            raise ConfigError(f"{self.path}: the header row is not UTF-8 text (or has a NUL)")
        self.columns = [name.strip().lower() for name in header]

    def __iter__(self) -> Iterator[tuple[int, dict[str, Any] | RowError]]:
        try:
            if self._csv is not None:
                yield from self._csv_rows(self._csv)
            else:
                yield from self._jsonl_rows()
        except OSError as exc:
            raise ConfigError(f"{self.path}: read failed: {exc.strerror or exc}") from None
        finally:
            self.close()

    def close(self) -> None:
        self._handle.close()

    def _csv_rows(self, reader: Iterator[list[str]]) -> Iterator[tuple[int, Any]]:
        columns, width = self.columns, len(self.columns)
        duplicates = len(set(columns)) != width
        number = 1
        while True:
            self._consumed.clear()
            try:
                values = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                number += 1
                yield number, RowError("(row)", f"unreadable CSV: {exc}", self._raw())
                continue
            number += 1
            if not values or (values == [""] and width != 1):
                continue
            if len(values) != width:
                content: dict[str, Any] = dict(zip(columns, values, strict=False))
                if len(values) > width:
                    content["_extra"] = json.dumps(values[width:], ensure_ascii=False)
                word = "more" if len(values) > width else "fewer"
                reason = f"{word} values than header columns ({len(values)} for {width})"
                yield number, RowError("(row)", reason, content)
                continue
            pairs = zip(columns, values, strict=True)
            row = _folded(pairs) if duplicates else dict(pairs)
            if isinstance(row, dict):
                row = _checked(row, values)
            yield number, row

    def _raw(self) -> dict[str, Any]:
        return {"_raw": "".join(self._consumed)[:MAX_FIELD_CHARS]}

    def _jsonl_rows(self) -> Iterator[tuple[int, Any]]:
        for number, line in enumerate(self._handle, start=1):
            if not line.strip():
                continue
            yield number, _json_row(line)


def read_rows(path: Path) -> RowReader:
    """The rows of ``path`` (see ``RowReader``); raises ``ConfigError`` if unreadable."""
    return RowReader(path)


def _json_row(line: str) -> dict[str, Any] | RowError:
    raw = {"_raw": line.rstrip("\r\n")[:MAX_FIELD_CHARS]}
    try:
        value = json.loads(line)
    except json.JSONDecodeError as exc:
        return RowError("(row)", f"invalid JSON: {exc.msg} (column {exc.colno})", raw)
    except RecursionError:
        return RowError("(row)", "invalid JSON: nested too deeply", raw)
    except ValueError as exc:  # e.g. an integer of more than 4,300 digits
        return RowError("(row)", f"invalid JSON: {str(exc).split(':')[0]}", raw)
    if not isinstance(value, dict):
        return RowError("(row)", "a JSON object per line is expected", raw)
    row = _folded(value.items())
    if isinstance(row, RowError):
        return row
    strings = [v for v in value.values() if isinstance(v, str)] + list(value)
    return _checked(row, strings)


def _folded(pairs: Iterable[tuple[str, Any]]) -> dict[str, Any] | RowError:
    row: dict[str, Any] = {}
    for key, value in pairs:
        name = key.strip().lower()
        given = row.get(name)
        if given not in (None, "") and value not in (None, "") and given != value:
            reason = "is given twice with different values (names are case-insensitive)"
            return RowError(name, reason, row)
        if name not in row or value not in (None, ""):
            row[name] = value
    return row


def _checked(row: dict[str, Any], strings: Sequence[str]) -> dict[str, Any] | RowError:
    """``row``, or a ``RowError`` naming the field with a NUL, a surrogate (a byte that is
    not UTF-8) or over ``MAX_FIELD_CHARS`` characters."""
    if not strings:
        return row
    if max(map(len, strings)) <= MAX_FIELD_CHARS and not _BAD_CHAR.search("\x01".join(strings)):
        return row
    for key, value in row.items():
        for text_ in (key, value):
            if not isinstance(text_, str):
                continue
            if len(text_) > MAX_FIELD_CHARS:
                return RowError(key, f"is longer than {MAX_FIELD_CHARS:,} characters", row)
            bad = _BAD_CHAR.search(text_)
            if bad is not None:
                return RowError(key, _bad_char(bad.group()), row)
    return row


def _bad_char(char: str) -> str:
    if char == "\x00":
        return "contains a NUL character"
    code = ord(char)
    if 0xDC80 <= code <= 0xDCFF:
        return f"is not UTF-8 text (byte 0x{code - 0xDC00:02X})"
    return f"contains a lone surrogate (U+{code:04X}), which is not text"


class RejectsWriter:
    """Writes rejected rows — row number, field, reason and the row with PII masked — in
    the input's format; a CSV keeps the input's columns for every row. Created 0600."""

    def __init__(self, path: Path, fmt: str, columns: Sequence[str] = ()) -> None:
        self.path = path
        self.fmt = fmt
        self.columns = list(dict.fromkeys(c for c in columns if not c.startswith("_")))
        self.count = 0
        self._handle: IO[str] | None = None
        self._csv: csv.DictWriter[str] | None = None

    def write(self, number: int, row: dict[str, Any] | None, error: RowError | str) -> None:
        field = error.field if isinstance(error, RowError) else ""
        ours = {"_row": number, "_field": field, "_error": mask_text(str(error))}
        masked = mask_row(row or {})
        record = {**ours, **{k: v for k, v in masked.items() if k not in ours}}
        if self._handle is None:
            self._open()
        assert self._handle is not None
        if self.fmt == "csv":
            if self._csv is None:
                names = ["_row", "_field", "_error", *self.columns, "_extra", "_raw"]
                self._csv = csv.DictWriter(self._handle, fieldnames=names, extrasaction="ignore")
                self._csv.writeheader()
            self._csv.writerow(record)
        else:
            self._handle.write(json.dumps(record, default=str) + "\n")
        self.count += 1

    def _open(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._handle = open_private(
                self.path, "w", encoding="utf-8", errors="backslashreplace", newline=""
            )
        except OSError as exc:
            raise ConfigError(f"{self.path}: cannot write rejects: {exc.strerror or exc}") from None

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


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, list):
        return "a JSON array"
    if isinstance(value, dict):
        return "a JSON object"
    return "a number" if isinstance(value, float) else type(value).__name__


def text(row: dict[str, Any], name: str, *, required: bool = False) -> str | None:
    """A text field, stripped (a JSON integer as its digits); ``None`` when empty."""
    value = row.get(name)
    if isinstance(value, str):
        value = value.strip()
    elif isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    elif value is not None:
        raise RowError(name, f"must be text, not {_kind(value)}")
    if not value:
        if required:
            raise RowError(name, "is required")
        return None
    return value


def _in_range(name: str, value: str, moment: datetime) -> datetime:
    if not _EARLIEST <= moment < _LATEST:
        raise RowError(name, f"{shown(value)} is outside the years 1970 to 2999")
    return moment


def timestamp(row: dict[str, Any], name: str, *, required: bool = False) -> datetime | None:
    """An ISO 8601 date-time with an offset (``Z`` allowed), as aware UTC in 1970–2999."""
    value = text(row, name, required=required)
    return None if value is None else parse_timestamp(name, value)


def parse_timestamp(name: str, value: str) -> datetime:
    """``value`` of field ``name`` as :func:`timestamp` reads it."""
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise RowError(name, f"{shown(value)} is not an ISO 8601 date-time") from None
    if parsed.tzinfo is None:
        raise RowError(name, f"{shown(value)} has no UTC offset (add Z or +hh:mm)")
    try:
        moment = parsed.astimezone(UTC)
    except (OverflowError, ValueError):
        raise RowError(name, f"{shown(value)} is out of range in UTC") from None
    return _in_range(name, value, moment)


def date_or_timestamp(row: dict[str, Any], name: str) -> date | datetime | None:
    """A plain date (``2026-11-02``) or an ISO 8601 date-time with offset."""
    value = text(row, name)
    if value is None:
        return None
    if len(value) == 10:
        try:
            day = date.fromisoformat(value)
        except ValueError:
            raise RowError(name, f"{shown(value)} is not a date (YYYY-MM-DD)") from None
        _in_range(name, value, datetime(day.year, day.month, day.day, 12, tzinfo=UTC))
        return day
    return timestamp(row, name)


def decimal(row: dict[str, Any], name: str) -> Decimal | None:
    """A finite number: a JSON number or text (``,`` thousands separators allowed)."""
    value = row.get(name)
    if isinstance(value, bool):
        raise RowError(name, "must be a number, not true/false")
    if isinstance(value, float):
        if not math.isfinite(value):
            raise RowError(name, f"{value} is not a finite number")
        return Decimal(repr(value))
    if isinstance(value, int):
        return Decimal(value)
    raw = text(row, name)
    if raw is None:
        return None
    try:
        amount = Decimal(raw.replace(",", ""))
    except (InvalidOperation, ValueError):
        raise RowError(name, f"{shown(raw)} is not a number") from None
    if not amount.is_finite():
        raise RowError(name, f"{shown(raw)} is not a finite number")
    return amount


def boolean(row: dict[str, Any], name: str) -> bool | None:
    value = row.get(name)
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raw = text(row, name)
    if raw is None:
        return None
    lowered = raw.lower()
    if lowered in ("true", "1", "yes", "y", "granted"):
        return True
    if lowered in ("false", "0", "no", "n", "denied"):
        return False
    raise RowError(name, f"{shown(raw)} is not true/false (or granted/denied)")
