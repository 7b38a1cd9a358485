"""What the report commands share: the period options, ``--format`` (a table, JSON, CSV
or one self-contained HTML page) and how figures are written in a table."""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Callable, Iterable, Mapping
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any
from zoneinfo import ZoneInfo

import typer

from revsync.cli.base import cli_settings, load_mapping, out, store_engine

if TYPE_CHECKING:
    from pathlib import Path

    from sqlalchemy import Engine

    from revsync.config.mapping import RevsyncConfig
    from revsync.reports.html import Dashboard
    from revsync.reports.sources import Period


class Format(StrEnum):
    table = "table"
    json = "json"
    csv = "csv"
    html = "html"


_DAY = ["%Y-%m-%d"]
FromOption = Annotated[
    datetime | None,
    typer.Option("--from", "--since", formats=_DAY,
                 help="First day, included (days of reports.timezone, default UTC)."),
]  # fmt: skip
ToOption = Annotated[
    datetime | None,
    typer.Option("--to", "--until", formats=_DAY, help="Last day, included."),
]
FormatOption = Annotated[
    Format, typer.Option("--format", help="table, json, csv, or html (one offline page).")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Same as --format json.")]
ModelOption = Annotated[
    str | None, typer.Option(help="Attribution model (default: the mapping's).")
]


def report_store(database_url: str | None, config: Path | None) -> tuple[RevsyncConfig, Engine]:
    """The mapping and the store a report reads (never created or migrated)."""
    settings = cli_settings(database_url, config)
    return load_mapping(settings), store_engine(settings, read_only=True)


def period_of(mapping: RevsyncConfig, first: datetime | None, last: datetime | None) -> Period:
    """Whole days ``first``..``last`` of the mapping's ``reports.timezone``."""
    from revsync.reports.sources import Period

    zone = ZoneInfo(mapping.reports.timezone)
    return Period.of_dates(_day(first), _day(last), zone)


def span(mapping: RevsyncConfig, first: datetime | None, last: datetime | None) -> str:
    text = f"{first:%Y-%m-%d}" if first else "the start"
    text += f" to {last:%Y-%m-%d}" if last else " to now"
    return f"{text} ({mapping.reports.timezone})"


def _day(value: datetime | None) -> date | None:
    return value.date() if value else None


def emit(
    fmt: Format,
    data: Mapping[str, Any],
    table: Callable[[], None],
    rows: Callable[[], Iterable[Mapping[str, Any]]],
    board: Callable[[], Dashboard],
) -> None:
    """Print ``data`` as ``fmt``: ``table()`` draws it, ``rows()`` flattens it for CSV,
    ``board()`` is its dashboard."""
    if fmt is Format.json:
        out.print_json(json.dumps(data))
    elif fmt is Format.csv:
        lines = list(rows())
        names = list(dict.fromkeys(name for line in lines for name in line))
        writer = csv.DictWriter(sys.stdout, fieldnames=names, lineterminator="\n")
        writer.writeheader()
        writer.writerows(lines)
    elif fmt is Format.html:
        from revsync.reports.html import render

        sys.stdout.write(render(board()))
    else:
        table()


def fmt_of(fmt: Format, as_json: bool) -> Format:
    return Format.json if as_json else fmt


def pct(value: str | None) -> str:
    return "—" if value is None else f"{float(value):,.1%}"


def times(value: str | None) -> str:
    return "—" if value is None else f"{float(value):,.2f}×"


def amount(value: str | None) -> str:
    return "—" if value is None else f"{Decimal(value):,}"


def count(value: int | str | None) -> str:
    if value is None:
        return "—"
    if isinstance(value, int):
        return f"{value:,}"
    numerator, _, denominator = value.partition("/")
    return f"{int(numerator) / int(denominator or 1):,.2f}"


def unconverted_note(data: dict[str, Any]) -> None:
    """Names the currencies a report could not convert into the reporting currency."""
    if data["unconverted"]:
        out.print(
            f"No exchange rate into {data['currency']} for {', '.join(data['unconverted'])}: "
            "those amounts are shown in their own currency (revsync import rates, or "
            "reports.rates in the mapping).",
            highlight=False,
        )
