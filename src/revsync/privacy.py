"""Keep raw PII out of files revsync writes: masking for rejects and owner-only files.

``mask_text`` replaces anything that looks like an email address or a phone number;
``mask_row`` also blanks whole columns whose name says they hold one. Files with rows or
request bodies are created readable by their owner only (0600).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TextIO, cast

MASK = "***"
_PII_COLUMN = re.compile(r"e-?mail|phone|mobile", re.IGNORECASE)
_WORD_CHAR = r"[^\s,;<>()\[\]\"'`]"
# Both patterns start only where a token or run starts, so they stay linear in the text.
_EMAIL_LIKE = re.compile(rf"(?<!{_WORD_CHAR}){_WORD_CHAR}*(?:@|%40){_WORD_CHAR}*")
_PHONE_RUN = re.compile(r"(?<![\w.])[+(]?[0-9][0-9\s().\-/]*+")
_DATE_LIKE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def _phone(match: re.Match[str]) -> str:
    found = match.group()
    number = found.rstrip(" \t\r\n.-/()")
    if sum(c.isdigit() for c in number) < 7 or _DATE_LIKE.match(number):
        return found
    return MASK + found[len(number) :]


def mask_text(value: str) -> str:
    """``value`` with email-like and phone-like parts replaced by ``***``."""
    if "@" in value or "%40" in value:
        value = _EMAIL_LIKE.sub(MASK, value)
    return _PHONE_RUN.sub(_phone, value)


def is_pii_column(name: str) -> bool:
    return bool(_PII_COLUMN.search(name))


def mask_value(name: str, value: Any) -> Any:
    """A row's value fit for a rejects file: PII columns blanked, text masked, nested JSON
    written as (masked) text, non-finite numbers as text."""
    if value is None or value == "":
        return value
    if is_pii_column(name):
        return MASK
    if isinstance(value, str):
        return mask_text(value)
    if isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return value if value == value and abs(value) != float("inf") else str(value)
    try:
        dumped = json.dumps(value, ensure_ascii=False, default=str)
    except (RecursionError, ValueError):
        return "(nested too deeply to show)"
    return mask_text(dumped)


def mask_row(row: Mapping[str, Any]) -> dict[str, Any]:
    return {str(name): mask_value(str(name), value) for name, value in row.items()}


def _owner_only(path: str, flags: int) -> int:
    return os.open(path, flags, 0o600)


def open_private(path: Path, mode: str = "w", **kwargs: Any) -> TextIO:
    """``open`` (text) that creates the file readable and writable by its owner only."""
    return cast(TextIO, open(path, mode, opener=_owner_only, **kwargs))


def create_private(path: Path) -> None:
    """Create ``path`` empty with mode 0600 unless it exists."""
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
