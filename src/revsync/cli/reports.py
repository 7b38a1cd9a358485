"""``revsync report sources``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, cast

import typer
from rich.table import Table

from revsync.cli.base import (
    ConfigOption,
    DatabaseOption,
    config_failure,
    out,
    report_app,
    show_table,
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
    report_store,
    span,
    times,
    unconverted_note,
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

    mapping, engine = report_store(database_url, config)
    model = model or mapping.attribution.model
    for option, value, allowed in (("--by", by, GROUPINGS), ("--model", model, MODEL_NAMES)):
        if value not in allowed:
            raise config_failure(ConfigError(f"{option} {value!r}: one of {', '.join(allowed)}"))
    period = period_of(mapping, first, last)
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
    unconverted_note(data)


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


@report_app.command("uploads")
def report_uploads(
    first: FromOption = None,
    last: ToOption = None,
    runs: Annotated[int, typer.Option(min=0, help="How many recent runs to list.")] = 10,
    config: ConfigOption = None,
    database_url: DatabaseOption = None,
    fmt: FormatOption = Format.table,
    as_json: JsonOption = False,
) -> None:
    """What was uploaded where, for the deals won in the period: per destination planned,
    sent, rejected by code, skipped by reason, pending; match rate; revenue uploaded
    against revenue won; the last runs."""
    from revsync.reports.html import Dashboard
    from revsync.reports.money import Converter
    from revsync.reports.uploads import uploads_report

    mapping, engine = report_store(database_url, config)
    with engine.connect() as conn:
        convert = Converter.load(conn, mapping.reports)
        data = uploads_report(conn, period_of(mapping, first, last),
                              [d.name for d in mapping.destinations], convert, runs)  # fmt: skip
    title = f"Uploads for deals won {span(mapping, first, last)}"
    emit(
        fmt_of(fmt, as_json),
        data,
        lambda: _uploads_table(data, title),
        lambda: [
            {k: v for k, v in d.items() if not isinstance(v, dict)} for d in data["destinations"]
        ],
        lambda: Dashboard(title, "", uploads=data),
    )


def _uploads_table(data: dict[str, Any], title: str) -> None:
    table = Table(title=f"{title}: {data['won_deals']:,} won deals", title_justify="left")
    for column in ("destination", "planned", "sent", "rejected", "pending", "skipped",
                   "match rate", "revenue uploaded", "revenue won"):  # fmt: skip
        table.add_column(column, justify="left" if column == "destination" else "right")
    for d in data["destinations"]:
        table.add_row(
            d["destination"], *(f"{d[k]:,}" for k in ("planned", "sent", "rejected", "pending",
                                                     "skipped")),
            pct(d["match_rate"]), _amounts(d["revenue_uploaded"]), _amounts(d["revenue_won"]),
        )  # fmt: skip
    show_table(table)
    for d in data["destinations"]:
        for label, counts in (("rejected", d["rejected_by_code"]),
                              ("skipped", d["skipped_by_reason"]),
                              ("pending", d["pending_by_state"])):  # fmt: skip
            for reason, n in counts.items():
                out.print(f"  {d['destination']} {label}: {n:,}  {reason}", highlight=False)
    if data["runs"]:
        recent = Table(title="Last runs", title_justify="left")
        for column in ("run", "started", "status", "deals read", "sent"):
            recent.add_column(
                column, justify="right" if column in ("run", "deals read") else "left"
            )
        for run in data["runs"]:
            sent = ", ".join(f"{dest} {r.get('sent', 0):,}" for dest, r in run["results"].items())
            recent.add_row(str(run["id"]), run["started_at"][:19], run["status"],
                           f"{run['deals_read']:,}", sent or "—")  # fmt: skip
        show_table(recent)


def _amounts(money: dict[str, str]) -> str:
    return ", ".join(f"{amount(v)} {cur}" for cur, v in money.items()) or "—"


@report_app.command("kpis")
def report_kpis(
    first: FromOption = None,
    last: ToOption = None,
    model: ModelOption = None,
    config: ConfigOption = None,
    database_url: DatabaseOption = None,
    fmt: FormatOption = Format.table,
    as_json: JsonOption = False,
) -> None:
    """The period's KPIs beside the previous period of the same length: visits, leads,
    conversion rates, won deals, revenue, average deal size, lead value, customers, ARPC,
    CLTV, spend, CPL, CAC, ROAS, ROI."""
    from revsync.reports.html import Dashboard
    from revsync.reports.kpis import kpis_report
    from revsync.reports.money import Converter

    if first is None or last is None or last < first:
        raise config_failure(ConfigError("report kpis needs --from and --to (from <= to)"))
    mapping, engine = report_store(database_url, config)
    with engine.connect() as conn:
        convert = Converter.load(conn, mapping.reports)
        data = kpis_report(conn, period_of(mapping, first, last),
                           model or mapping.attribution.model, convert)  # fmt: skip
    title = f"KPIs {span(mapping, first, last)}"
    emit(
        fmt_of(fmt, as_json),
        data,
        lambda: _kpis_table(data, title),
        lambda: _kpi_lines(data),
        lambda: Dashboard(title, "", kpis=data),
    )


_COUNTS = ("visits", "leads", "visit_to_lead", "won_deals", "lead_to_won", "customers",
           "new_customers")  # fmt: skip
_MONEY = ("revenue", "average_deal", "lead_value", "arpc", "cltv", "spend", "cpl", "cac",
          "roas", "roi")  # fmt: skip


def _kpi_lines(data: dict[str, Any]) -> list[dict[str, Any]]:
    """A line per KPI (and currency), the current and the previous period."""
    now, before = data["current"], data["previous"]
    lines = [{"kpi": k, "currency": "", "current": now[k], "previous": before[k]}
             for k in _COUNTS]  # fmt: skip
    for cur in sorted(set(now["currencies"]) | set(before["currencies"])):
        a, b = now["currencies"].get(cur, {}), before["currencies"].get(cur, {})
        lines += [{"kpi": k, "currency": cur, "current": a.get(k), "previous": b.get(k)}
                  for k in _MONEY]  # fmt: skip
    return lines


def _kpis_table(data: dict[str, Any], title: str) -> None:
    first, last = data["previous_period"]
    table = Table(title=title, title_justify="left")
    for column in ("KPI", "cur", "this period", f"previous ({first} to {last})", "change"):
        table.add_column(column, justify="left" if column in ("KPI", "cur") else "right")
    ratios = {"visit_to_lead", "lead_to_won", "roi"}
    for line in _kpi_lines(data):
        kpi, now, before = line["kpi"], line["current"], line["previous"]
        shown = pct if kpi in ratios else times if kpi == "roas" else (
            count if line["currency"] == "" else amount)  # fmt: skip
        change = "—"
        if now is not None and before not in (None, 0, "0", "0.00") and kpi not in ratios:
            change = f"{float(now) / float(before) - 1:+.1%}"
        table.add_row(kpi.replace("_", " "), line["currency"], shown(now), shown(before), change)
    show_table(table)


@report_app.command("pipeline")
def report_pipeline(
    first: FromOption = None,
    last: ToOption = None,
    by: Annotated[str, typer.Option(help="channel, source or campaign.")] = "channel",
    model: ModelOption = None,
    config: ConfigOption = None,
    database_url: DatabaseOption = None,
    fmt: FormatOption = Format.table,
    as_json: JsonOption = False,
) -> None:
    """The opportunity report: deals created in the period by stage and source, each
    stage's deals that moved on and median days in it (from the stage history revsync
    records on every sync and, where read, the CRM's own)."""
    from revsync.attribution import MODEL_NAMES
    from revsync.reports.html import Dashboard
    from revsync.reports.money import Converter
    from revsync.reports.pipeline import pipeline_report

    mapping, engine = report_store(database_url, config)
    model = model or mapping.attribution.model
    for option, value, allowed in (("--by", by, ("channel", "source", "campaign")),
                                   ("--model", model, MODEL_NAMES)):  # fmt: skip
        if value not in allowed:
            raise config_failure(ConfigError(f"{option} {value!r}: one of {', '.join(allowed)}"))
    with engine.connect() as conn:
        convert = Converter.load(conn, mapping.reports)
        period = period_of(mapping, first, last)
        data = pipeline_report(conn, by, model, period, convert)  # type: ignore[arg-type]
    title = f"Pipeline by stage and {by}, deals created {span(mapping, first, last)}"
    emit(
        fmt_of(fmt, as_json),
        data,
        lambda: _pipeline_tables(data, title),
        lambda: data["rows"],
        lambda: Dashboard(title, f"model {model}", pipeline=data),
    )


def _pipeline_tables(data: dict[str, Any], title: str) -> None:
    stages = Table(title=f"{title}: {data['total']['deals']:,} deals", title_justify="left")
    for column in ("stage", "deals now", "open", "won", "lost", "amount", "entered",
                   "→ next", "median days"):  # fmt: skip
        stages.add_column(column, justify="left" if column == "stage" else "right")
    for s in data["stages"]:
        stages.add_row(s["stage"], *(f"{s[k]:,}" for k in ("deals", "open", "won", "lost")),
                       _amounts(s["amount"]), f"{s['entered']:,}", pct(s["to_next"]),
                       "—" if s["median_days"] is None else f"{s['median_days']:,}")  # fmt: skip
    show_table(stages)
    cells = Table(title=f"Deals by stage and {data['by']}", title_justify="left")
    for column in ("stage", data["by"], "deals", "amount"):
        cells.add_column(column, justify="right" if column in ("deals", "amount") else "left")
    for row in data["rows"]:
        cells.add_row(row["stage"], row["source"], count(row["deals"]), _amounts(row["amount"]))
    show_table(cells)
    unconverted_note(data)
