"""``revsync report sources``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, cast

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
from revsync.cli.output import (
    Format,
    FormatOption,
    FromOption,
    JsonOption,
    ModelOption,
    ToOption,
    amount,
    count,
    emit,
    fmt_of,
    pct,
    period_of,
    span,
    times,
)
from revsync.errors import ConfigError

if TYPE_CHECKING:
    from revsync.reports.sources import GroupBy

_BY_HELP = "channel, source, campaign, ad_group, keyword or landing_page."


@report_app.command("sources")
def report_sources(
    first: FromOption = None,
    last: ToOption = None,
    by: Annotated[str, typer.Option(help=_BY_HELP)] = "channel",
    model: ModelOption = None,
    currency: Annotated[
        str | None, typer.Option(help="Only money in this currency (default: each).")
    ] = None,
    config: ConfigOption = None,
    database_url: DatabaseOption = None,
    fmt: FormatOption = Format.table,
    as_json: JsonOption = False,
) -> None:
    """Visits, leads, won deals, revenue, lead value and, with spend, CPL, CAC, ROAS and
    ROI per source.

    A lead is a person's first identity event; its source is the last non-direct touch
    before it. Revenue is the model's credits on deals won in the period. Money is per
    currency, or in reports.currency where a rate converts it; never summed across
    currencies."""
    from revsync.attribution import MODEL_NAMES
    from revsync.reports.html import Dashboard
    from revsync.reports.money import Converter
    from revsync.reports.sources import GROUPINGS, as_dict, sources_report

    settings = cli_settings(database_url, config)
    mapping = load_mapping(settings)
    model = model or mapping.attribution.model
    for option, value, allowed in (("--by", by, GROUPINGS), ("--model", model, MODEL_NAMES)):
        if value not in allowed:
            raise config_failure(ConfigError(f"{option} {value!r}: one of {', '.join(allowed)}"))
    period = period_of(mapping, first, last)
    engine = store_engine(settings, read_only=True)
    with engine.connect() as conn:
        convert = Converter.load(conn, mapping.reports)
        report = sources_report(conn, cast("GroupBy", by), model, period,
                                currency and currency.upper(), convert)  # fmt: skip
    data = as_dict(report)
    title = f"Sources by {by}, {span(mapping, first, last)}, model {model}"
    emit(
        fmt_of(fmt, as_json),
        data,
        lambda: _table(data, title, report.has_spend),
        lambda: _flat(data),
        lambda: Dashboard(title, f"model {model}", sources={by: data}),
    )


def _table(data: dict[str, Any], title: str, has_spend: bool) -> None:
    by = data["by"]
    table = Table(title=title, title_justify="left")
    spend = ("spend", "CPL", "CAC", "ROAS", "ROI") if has_spend else ()
    for column in (by, "visits", "leads", "visit→lead", "new cust.", "cur", "won deals",
                   "revenue", "lead value", "lead→won", "avg deal", *spend):  # fmt: skip
        table.add_column(column, justify="left" if column in (by, "cur") else "right")
    for row in [*data["rows"], None, data["total"]]:
        if row is None:
            table.add_section()
            continue
        first = [row[by], f"{row['visits']:,}", f"{row['leads']:,}",
                 pct(row["visit_to_lead"]), count(row["new_customers"])]  # fmt: skip
        money = row["currencies"] or {"—": None}
        for n, (cur, m) in enumerate(money.items()):
            lead = first if n == 0 else [""] * len(first)
            if m is None:
                table.add_row(*lead, "—", *[""] * (5 + len(spend)))
                continue
            figures = [count(m["won_deals"]), amount(m["revenue"]), amount(m["lead_value"]),
                       pct(m["lead_to_won"]), amount(m["average_deal"])]  # fmt: skip
            if spend:
                figures += [amount(m["spend"]), amount(m["cpl"]), amount(m["cac"]),
                            times(m["roas"]), pct(m["roi"])]  # fmt: skip
            table.add_row(*lead, cur, *figures)
    show_table(table)
    if data["unconverted"]:
        out.print(
            f"No exchange rate into {data['currency']} for {', '.join(data['unconverted'])}: "
            "those amounts are shown in their own currency (revsync import rates, or "
            "reports.rates in the mapping).",
            highlight=False,
        )


def _flat(data: dict[str, Any]) -> list[dict[str, Any]]:
    """A CSV line per row and currency, leads by type as their own columns."""
    by = data["by"]
    lines = []
    for row in [*data["rows"], data["total"]]:
        types = {f"leads_{k}": v for k, v in row["leads_by_type"].items()}
        base = {by: row[by], "visits": row["visits"], "leads": row["leads"], **types,
                "visit_to_lead": row["visit_to_lead"],
                "new_customers": row["new_customers"]}  # fmt: skip
        for cur, money in (row["currencies"] or {"": {}}).items():
            lines.append({**base, "currency": cur, **money})
    return lines
