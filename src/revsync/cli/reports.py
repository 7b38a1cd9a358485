"""``revsync report sources``."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated, cast

import typer
from rich.table import Table

from revsync.cli.base import (
    ConfigOption,
    DatabaseOption,
    cli_settings,
    config_failure,
    load_mapping,
    out,
    report_app,
    show_table,
    store_engine,
)
from revsync.errors import ConfigError

if TYPE_CHECKING:
    from revsync.reports.sources import GroupBy


@report_app.command("sources")
def report_sources(
    since: Annotated[
        datetime | None,
        typer.Option(formats=["%Y-%m-%d"], help="First day (UTC), included."),
    ] = None,
    until: Annotated[
        datetime | None,
        typer.Option(formats=["%Y-%m-%d"], help="Last day (UTC), included."),
    ] = None,
    by: Annotated[str, typer.Option(help="channel, source, campaign or keyword.")] = "channel",
    model: Annotated[
        str | None, typer.Option(help="Attribution model (default: the mapping's).")
    ] = None,
    currency: Annotated[
        str | None, typer.Option(help="Only this currency's money (default: each).")
    ] = None,
    config: ConfigOption = None,
    database_url: DatabaseOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Visits, leads, won deals, revenue and lead value per source.

    A lead is a person's first identity event; its source is the last non-direct touch
    before it. Revenue is the model's credits on deals won in the period. Money is shown
    per currency, never summed across currencies. With imported spend: spend, CPL, ROAS and
    ROI per campaign (--by campaign) or in the total row."""
    from revsync.attribution import MODEL_NAMES
    from revsync.reports.sources import GROUPINGS, Period, as_dict, sources_report

    settings = cli_settings(database_url, config)
    mapping = load_mapping(settings)
    model = model or mapping.attribution.model
    for option, value, allowed in (("--by", by, GROUPINGS), ("--model", model, MODEL_NAMES)):
        if value not in allowed:
            raise config_failure(ConfigError(f"{option} {value!r}: one of {', '.join(allowed)}"))
    period = Period.of_dates(_day(since), _day(until), UTC)
    engine = store_engine(settings, read_only=True)
    with engine.connect() as conn:
        grouping = cast("GroupBy", by)
        report = sources_report(conn, grouping, model, period, currency and currency.upper())
    data = as_dict(report)
    if as_json:
        out.print_json(json.dumps(data))
        return
    span = f"{since:%Y-%m-%d}" if since else "the start"
    span += f" to {until:%Y-%m-%d}" if until else " to now"
    table = Table(title=f"Sources by {by}, {span} (UTC), model {model}", title_justify="left")
    spend = ("spend", "CPL", "ROAS", "ROI") if report.has_spend else ()
    for column in (by, "visits", "leads", "visit→lead", "cur", "won deals", "revenue",
                   "lead value", "lead→won", "avg deal", *spend):  # fmt: skip
        table.add_column(column, justify="left" if column in (by, "cur") else "right")
    for row in [*data["rows"], None, data["total"]]:
        if row is None:
            table.add_section()
            continue
        first = [
            row[by],
            f"{row['visits']:,}",
            f"{row['leads']:,}",
            _pct(row["visit_to_lead"]),
        ]
        money = row["currencies"] or {"—": None}
        for n, (cur, m) in enumerate(money.items()):
            lead = first if n == 0 else ["", "", "", ""]
            if m is None:
                table.add_row(*lead, "—", *[""] * (5 + len(spend)))
                continue
            table.add_row(
                *lead,
                cur,
                _count(m["won_deals"]),
                _amount(m["revenue"]),
                _amount(m["lead_value"]),
                _pct(m["lead_to_won"]),
                _amount(m["average_deal"]),
                *(
                    (_amount(m["spend"]), _amount(m["cpl"]), _times(m["roas"]), _pct(m["roi"]))
                    if spend
                    else ()
                ),
            )
    show_table(table)


def _day(value: datetime | None) -> date | None:
    return value.date() if value else None


def _pct(value: str | None) -> str:
    return "—" if value is None else f"{float(value):,.1%}"


def _times(value: str | None) -> str:
    return "—" if value is None else f"{float(value):,.2f}×"


def _amount(value: str | None) -> str:
    if value is None:
        return "—"
    return f"{Decimal(value):,}"


def _count(value: int | str) -> str:
    if isinstance(value, int):
        return f"{value:,}"
    numerator, denominator = (int(x) for x in value.split("/"))
    return f"{numerator / denominator:,.2f}"
