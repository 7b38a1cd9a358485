"""Value rules of the mapping file that a plain type cannot say: zones, times, URLs, regions.

Each is an annotated type (``TimeZoneName``, ``ClockTime``, ``WebUrl``, …) so that
``mapping.py`` states a field's rule in its annotation and pydantic reports a failure at
that field's key path.
"""

from __future__ import annotations

import difflib
import functools
import re
from datetime import time
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

EXPORT_SUFFIXES = (".csv", ".jsonl", ".ndjson")
"""What a file source reads (see ``rows.file_format``)."""


class LocatedValueError(ValueError):
    """A model-level problem that belongs to keys below the model (cross-block rules).

    ``problems`` holds ``(key path below the model, message)`` pairs; the loader reports
    each at its own line.
    """

    def __init__(self, problems: list[tuple[tuple[str | int, ...], str]]) -> None:
        super().__init__("; ".join(message for _, message in problems))
        self.problems = problems


@functools.cache
def _zones() -> frozenset[str]:
    from zoneinfo import available_timezones

    return frozenset(available_timezones())


def _zone(value: str) -> str:
    if value in _zones():
        return value
    if len(value) > 64 or not value.isprintable():
        raise ValueError("not an IANA time zone name (those look like America/New_York)")
    inside = sorted(zone for zone in _zones() if zone.startswith(f"{value}/"))
    if inside:
        raise ValueError(f"{value!r} is a region, not a zone; name one, e.g. {inside[0]}")
    close = difflib.get_close_matches(value, sorted(_zones()), n=1)
    hint = f"; did you mean {close[0]}?" if close else " (e.g. America/New_York, UTC)"
    raise ValueError(f"unknown IANA time zone {value!r}{hint}")


_CLOCK = re.compile(r"^([01]?\d|2[0-3]):[0-5]\d(:[0-5]\d)?$")


def _clock(value: Any) -> Any:
    if value is None or isinstance(value, time):
        return value
    if isinstance(value, str) and _CLOCK.match(value):
        return value
    raise ValueError('a local time as a quoted "HH:MM" string, e.g. "17:00"')


def _url(value: str) -> str:
    try:
        parts = urlsplit(value)
        port_ok = parts.port is None or parts.port > 0
    except ValueError:
        parts, port_ok = None, False
    if (
        parts is None
        or not port_ok
        or parts.scheme not in ("http", "https")
        or not parts.hostname
        or any(c.isspace() for c in value)
    ):
        raise ValueError("an http:// or https:// URL with a host, e.g. https://api.example.com")
    return value


def _region(value: str) -> str:
    import phonenumbers

    region = value.upper()
    if region not in phonenumbers.SUPPORTED_REGIONS:
        raise ValueError(
            f"{value!r} is not a 2-letter region phonenumbers knows (e.g. US, GB, DE); "
            "numbers without a country code are read in this region"
        )
    return region


def _pattern(regex: str, example: str) -> Any:
    compiled = re.compile(regex)

    def check(value: str) -> str:
        if not compiled.match(value):
            raise ValueError(f"looks like {example}")
        return value

    return check


def _local_path(value: Path) -> Path:
    if "\0" in str(value):
        raise ValueError("a path cannot contain a NUL character")
    if any(len(part.encode("utf-8", "surrogatepass")) > 255 for part in value.parts):
        raise ValueError("a file or folder name longer than 255 bytes")
    return value


def _export_path(value: Path) -> Path:
    _local_path(value)
    if value.suffix.lower() not in EXPORT_SUFFIXES:
        raise ValueError(f"unknown file type {value.suffix!r}; use .csv or .jsonl")
    return value


TimeZoneName = Annotated[str, AfterValidator(_zone)]
ClockTime = Annotated[time, BeforeValidator(_clock)]
WebUrl = Annotated[str, AfterValidator(_url)]
PhoneRegion = Annotated[str, AfterValidator(_region)]
SalesforceApiVersion = Annotated[str, AfterValidator(_pattern(r"^\d{2,3}\.\d$", '"59.0"'))]
GraphApiVersion = Annotated[str, AfterValidator(_pattern(r"^v\d{1,3}\.\d{1,2}$", '"v26.0"'))]
ExportPath = Annotated[Path, AfterValidator(_export_path)]
LocalPath = Annotated[Path, AfterValidator(_local_path)]


def _numeric(annotation: Any) -> bool:
    """int or float (optional or not), or a Literal of numbers such as ``version: 1``."""
    kinds = {annotation, *get_args(annotation)}
    if get_origin(annotation) is Literal:
        return all(
            isinstance(k, int | float) and not isinstance(k, bool) for k in kinds - {annotation}
        )
    return bool(kinds & {int, float}) and bool not in kinds


def no_bool_numbers(cls: Any, data: Any) -> Any:
    """``true``/``false`` where a number belongs fails as text (pydantic would read 1/0)."""
    if not isinstance(data, dict):
        return data
    out = dict(data)
    for name, value in data.items():
        field = cls.model_fields.get(name) if isinstance(name, str) else None
        if isinstance(value, bool) and field is not None and _numeric(field.annotation):
            out[name] = str(value).lower()
    return out


def customer_id(value: str) -> str:
    """A Google Ads customer ID: ten digits, dashes allowed (``123-456-7890``)."""
    digits = value.replace("-", "")
    if not digits.isdigit() or len(digits) != 10:
        raise ValueError("a customer ID is 10 digits, dashes allowed, e.g. 123-456-7890")
    return digits


def conversion_action_id(value: str) -> str:
    """A Google Ads conversion action's numeric ID (never its name)."""
    if not value.strip().isdigit():
        raise ValueError(
            f"{value!r} is not a conversion action ID: use the action's number (Google Ads: "
            "Goals > Conversions > the action; `ctId=` in its URL), not its name"
        )
    return value.strip()


def cross_block(
    sources: list[str], destinations: list[tuple[str, list[str]]]
) -> list[tuple[tuple[str | int, ...], str]]:
    """Rules across blocks, each at its own key: unique names, destinations' known sources."""
    problems: list[tuple[tuple[str | int, ...], str]] = []
    for kind, names in (("sources", sources), ("destinations", [d for d, _ in destinations])):
        for i, name in enumerate(names):
            if name in names[:i]:
                first = f"{kind}[{names.index(name)}]"
                problems.append(((kind, i, "name"), f"duplicate name {name!r} ({first})"))
    for i, (_, wanted) in enumerate(destinations):
        for j, source in enumerate(wanted):
            if source not in sources:
                known = ", ".join(sources) or "none"
                problems.append((("destinations", i, "sources", j),
                                 f"unknown source {source!r}; known: {known}"))  # fmt: skip
    return problems


class Block(BaseModel):
    """A block of the mapping file: unknown keys refused, frozen, no NaN or infinity, no
    true/false where a number goes."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _no_bool_numbers(cls, data: Any) -> Any:
        return no_bool_numbers(cls, data)


_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,39}$")


class Named(Block):
    """A source or destination block: its name keys watermarks and idempotency keys."""

    name: str
    credentials: str | None = Field(
        None,
        pattern=r"^[a-z][a-z0-9_]{0,30}$",
        description="Named credentials: REVSYNC_<NAME>_<VARIABLE> (REVSYNC_ACME_GA4_API_SECRET) "
        "or the secret file revsync_<name>_<variable>; default: the unnamed REVSYNC_<VARIABLE>.",
    )

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError("use lowercase letters, digits, '-' or '_' (max 40)")
        return value
