"""``revsync report all --html FILE``: every report in one self-contained HTML file."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated
from zoneinfo import ZoneInfo

import typer

from revsync.cli.base import (
    ConfigOption,
    DatabaseOption,
    config_failure,
    out,
    report_app,
)
from revsync.cli.output import report_store
from revsync.errors import ConfigError

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from revsync.config.mapping import RevsyncConfig
    from revsync.reports.html import Dashboard


@report_app.command("all")
def report_all(
    html: Annotated[Path, typer.Option("--html", help="The HTML file to write.")],
    model: Annotated[
        str | None, typer.Option(help="Attribution model (default: the mapping's).")
    ] = None,
    config: ConfigOption = None,
    database_url: DatabaseOption = None,
) -> None:
    """Write every report into one HTML file that opens offline: the last 30 days' KPIs
    against the 30 before, revenue and lead value by source, the funnel, spend against
    revenue per campaign, the pipeline by stage, the models side by side and upload
    health, each with its figures in a table."""
    from revsync.attribution import MODEL_NAMES
    from revsync.reports.html import render

    mapping, engine = report_store(database_url, config)
    model = model or mapping.attribution.model
    if model not in MODEL_NAMES:
        raise config_failure(ConfigError(f"--model {model!r}: one of {', '.join(MODEL_NAMES)}"))
    board = dashboard(engine, mapping, model)
    html.write_text(render(board), encoding="utf-8")
    out.print(f"wrote {html} ({html.stat().st_size / 1e6:.1f} MB, opens offline)")


def dashboard(engine: Engine, mapping: RevsyncConfig, model: str) -> Dashboard:
    """The reports over all time, in their JSON forms."""
    from revsync.reports.html import Dashboard
    from revsync.reports.kpis import kpis_report
    from revsync.reports.models import as_dict as models_dict
    from revsync.reports.models import models_report
    from revsync.reports.money import Converter
    from revsync.reports.pipeline import pipeline_report
    from revsync.reports.sources import GROUPINGS, Period, as_dict, sources_report
    from revsync.reports.uploads import uploads_report

    today = datetime.now(ZoneInfo(mapping.reports.timezone)).date()
    month = Period.of_dates(today - timedelta(days=29), today, ZoneInfo(mapping.reports.timezone))
    with engine.connect() as conn:
        convert = Converter.load(conn, mapping.reports)
        sources = {
            by: as_dict(sources_report(conn, by, model, convert=convert))  # type: ignore[arg-type]
            for by in GROUPINGS
        }
        kpis = kpis_report(conn, month, model, convert)
        pipeline = pipeline_report(conn, "channel", model, convert=convert)
        uploads = uploads_report(conn, None, [d.name for d in mapping.destinations], convert)
    models = models_dict(models_report(engine, mapping, workers=min(8, os.cpu_count() or 1)))
    return Dashboard(
        title="revsync: revenue by source",
        subtitle=f"All time (KPIs: the last 30 days to {today}), model {model}; written "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        sources=sources,
        models=models,
        kpis=kpis,
        uploads=uploads,
        pipeline=pipeline,
    )
