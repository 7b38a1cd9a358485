"""``revsync explain``, ``doctor`` and ``report models``."""

from __future__ import annotations

import json
import os
from decimal import Decimal
from fractions import Fraction
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from revsync.cli.base import (
    EXIT_FAILED,
    EXIT_OK,
    ConfigOption,
    DatabaseOption,
    app,
    cli_settings,
    err,
    load_mapping,
    out,
    report_app,
    show_table,
    store_engine,
)
from revsync.cli.output import (
    Format,
    FormatOption,
    JsonOption,
    emit,
    fmt_of,
    unconverted_note,
)


@app.command()
def explain(
    deal_id: Annotated[str, typer.Argument(help="The CRM deal ID.")],
    source: Annotated[str | None, typer.Option(help="Source name, if the ID is ambiguous.")] = None,
    config: ConfigOption = None,
    database_url: DatabaseOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show a deal's journey, matched keys, credits and planned conversions.

    The journey's touchpoints, which key linked which visitor, each touchpoint's credit
    under every model, and the conversions planned from it with their ledger state."""
    from revsync.reports.explain import as_dict, find_sources
    from revsync.reports.explain import explain as explain_deal

    settings = cli_settings(database_url, config)
    mapping = load_mapping(settings)
    engine = store_engine(settings, read_only=True)
    with engine.connect() as conn:
        sources = [source] if source else find_sources(conn, deal_id)
        if len(sources) != 1:
            what = "not in the store" if not sources else f"in several sources: {sources}"
            err.print(f"[red]error[/red] deal {deal_id!r} is {what}")
            raise typer.Exit(EXIT_FAILED)
        result = explain_deal(conn, mapping, sources[0], deal_id)
    if result is None:
        err.print(f"[red]error[/red] deal {deal_id!r} is not in source {sources[0]!r}")
        raise typer.Exit(EXIT_FAILED)
    data = as_dict(result)
    if as_json:
        out.print_json(json.dumps(data))
        return
    deal = data["deal"]
    out.print(
        f"[bold]{deal['source']}/{deal['id']}[/bold]: {deal['status']} {deal['amount']} "
        f"{deal['currency']}, closed {deal['close_at']}, pipeline {deal['pipeline']}, "
        f"contacts {', '.join(deal['contacts']) or '—'}"
    )
    if not data["matches"]:
        out.print("No visitor matched this deal's contacts or click IDs.")
    for match in data["matches"]:
        out.print(f"  visitor {match['visitor_id']} matched by {match['key_type']} {match['key']}")
    journey = Table(title="Journey", title_justify="left")
    for column in ("#", "time (UTC)", "channel", "source / medium", "campaign", "click"):
        journey.add_column(column)
    models = list(result.credits)
    for model in models:
        journey.add_column(model, justify="right")
    for number, tp in enumerate(data["journey"], start=1):
        credits = [
            f"{float(Fraction(tp['credits'][m]['share'])):.1%} {tp['credits'][m]['amount']}"
            if m in tp["credits"]
            else "—"
            for m in models
        ]
        journey.add_row(
            str(number),
            tp["at"][:16].replace("T", " "),
            tp["channel"],
            f"{tp['source'] or '—'} / {tp['medium'] or '—'}",
            tp["campaign"] or "",
            tp["click"] or "",
            *credits,
        )
    show_table(journey)
    planned = Table(title="Conversions", title_justify="left")
    for column in ("destination", "kind", "key", "touchpoint", "value", "state", "why"):
        planned.add_column(column)
    for row in data["conversions"]:
        planned.add_row(
            row["destination"],
            row["kind"],
            row["key"][:12] + "…",
            (row["touchpoint_id"] or "—")[:12],
            f"{row['value']} {row['currency']}",
            row["state"],
            " ".join(row[k] for k in ("error_code", "error_message") if row.get(k)),
        )
    show_table(planned)


@app.command()
def doctor(
    config: ConfigOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the results as JSON.")] = False,
    timeout: Annotated[
        float, typer.Option(min=1, help="Seconds each check may take before it is failed.")
    ] = 30.0,
) -> None:
    """Check every source and destination before a sync.

    Sources: credentials, mapped fields, API budget. Destinations: credentials,
    conversion actions, pixel, GA4 stream, output directory."""
    from revsync.checks import Status
    from revsync.doctor import SYMBOLS, failed, run_doctor

    settings = cli_settings(None, config)
    mapping = load_mapping(settings)
    results = run_doctor(mapping, settings, timeout=timeout)
    if as_json:
        payload = {"ok": not failed(results), "checks": [r.as_dict() for r in results]}
        out.print_json(json.dumps(payload))
    else:
        colours = {Status.PASS: "green", Status.WARN: "yellow", Status.FAIL: "red"}
        table = Table(title=f"revsync doctor: {settings.config}", title_justify="left")
        for column in ("check", "target", "result", "detail"):
            table.add_column(column, overflow="fold")
        for r in results:
            colour = colours.get(r.status, "dim")
            symbol = f"[{colour}]{SYMBOLS[r.status]}[/{colour}]"
            table.add_row(r.check, r.target, symbol, Text(r.detail))
        show_table(table)
    raise typer.Exit(EXIT_FAILED if failed(results) else EXIT_OK)


@report_app.command("models")
def report_models(
    config: ConfigOption = None,
    database_url: DatabaseOption = None,
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            help="Processes to spread the deals over, 10,000 deals each at least "
            "(default: one per CPU core, up to 8).",
        ),
    ] = min(8, os.cpu_count() or 1),
    fmt: FormatOption = Format.table,
    as_json: JsonOption = False,
) -> None:
    """Revenue by channel under each attribution model, side by side."""
    from revsync.attribution import MODEL_NAMES
    from revsync.reports.html import Dashboard
    from revsync.reports.models import as_dict, models_report

    settings = cli_settings(database_url, config)
    mapping = load_mapping(settings)
    engine = store_engine(settings, read_only=True)
    report = models_report(engine, mapping, workers=workers)
    data = as_dict(report)

    def table() -> None:
        shown = Table(title=f"Revenue by channel and model ({report.matched:,} matched won deals)"
                      + (f", in {report.currency}" if report.currency else ""))  # fmt: skip
        shown.add_column("channel")
        shown.add_column("cur")
        for name in MODEL_NAMES:
            shown.add_column(name.replace("_", " "), justify="right")
        for row in data["rows"]:
            shown.add_row(
                row["channel"], row["currency"], *(f"{Decimal(row[m]):,.2f}" for m in MODEL_NAMES)
            )
        show_table(shown)

    fmt = fmt_of(fmt, as_json)
    emit(fmt, data, table, lambda: data["rows"],
         lambda: Dashboard("Revenue by channel under each model", "", models=data))  # fmt: skip
    if fmt is not Format.table:
        return
    unconverted_note(data)
    if not report.data_driven_fitted:
        out.print(
            f"data driven: no visitor path of the last {mapping.matching.lookback_days} days "
            "led to a won deal (links are stored when `revsync sync` matches deals), so it "
            "credits like linear."
        )
