"""``revsync sync``, ``worker`` and ``demo``: runs of the loop and their summaries."""

from __future__ import annotations

import json
import logging
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from sqlalchemy import Engine

from revsync.cli.base import (
    EXIT_BUSY,
    EXIT_CONFIG,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_PARTIAL,
    EXIT_STOPPED,
    ConfigOption,
    DatabaseOption,
    amounts,
    app,
    cli_settings,
    config_failure,
    err,
    load_mapping,
    out,
    print_import,
    progress_display,
    show_table,
    stop_on_signals,
    store_engine,
)
from revsync.cli.dashboard import report_all
from revsync.cli.reports import report_sources
from revsync.collect.importer import import_identities, import_touchpoints
from revsync.collect.spend import import_spend
from revsync.config.loader import load_config
from revsync.config.mapping import RevsyncConfig
from revsync.config.settings import Settings
from revsync.errors import ConfigError
from revsync.sync.factory import build_destinations, build_sources
from revsync.sync.job import SyncJob
from revsync.sync.summary import RunSummary

log = logging.getLogger(__name__)


def sync_job(
    engine: Engine,
    config: RevsyncConfig,
    settings: Settings,
    replan: bool = False,
    stop: threading.Event | None = None,
) -> SyncJob:
    """A run over the mapping's sources and destinations; ``ConfigError`` when one of
    them cannot be built (missing credentials, say)."""
    return SyncJob(
        engine, config, build_sources(config, settings), build_destinations(config, settings),
        replan=replan, lease_ttl=timedelta(seconds=settings.lease_seconds), stop=stop,
        settings=settings,
    )  # fmt: skip


def run_sync(
    engine: Engine,
    config: RevsyncConfig,
    settings: Settings,
    show_progress: bool,
    replan: bool = False,
    stop: threading.Event | None = None,
) -> RunSummary:
    try:
        job = sync_job(engine, config, settings, replan, stop)
    except ConfigError as exc:
        raise config_failure(exc) from None
    with progress_display(show_progress) as progress:
        job.progress = progress
        return job.run()


def print_summary(summary: RunSummary) -> None:
    out.print(
        f"[bold]run {summary.run_id}[/bold]: {summary.status} in {summary.seconds:.1f}s — "
        f"deals read {sum(summary.deals_read.values()):,}, won {summary.deals_won:,}, "
        f"matched to touchpoints {summary.deals_matched:,}"
    )
    table = Table(title="Conversions by destination (this run)", title_justify="left")
    names = sorted(set(summary.planned) | set(summary.results) | set(summary.ledger))
    shown = [
        status
        for status in ("sent", "already_sent", "rejected", "retry", "validated")
        if any(summary.results.get(name, {}).get(status) for name in names)
    ]
    for column in ("destination", "new", *(s.replace("_", " ") for s in shown), "in ledger"):
        table.add_column(column, justify="left" if column == "destination" else "right")
    for name in names:
        results = summary.results.get(name, {})
        table.add_row(
            name,
            f"{summary.planned.get(name, 0):,}",
            *(f"{results.get(s, 0):,}" for s in shown),
            f"{sum(summary.ledger.get(name, {}).values()):,}",
        )
    show_table(table)
    if summary.revenue_by_channel:
        revenue = Table(title="Revenue by channel (this run, default model)", title_justify="left")
        revenue.add_column("channel")
        revenue.add_column("revenue", justify="right")
        rows = sorted(
            summary.revenue_by_channel.items(),
            key=lambda item: -sum(item[1].values()),
        )
        for channel, by_currency in rows:
            amounts = ", ".join(
                f"{amount:,.2f} {cur}" for cur, amount in sorted(by_currency.items())
            )
            revenue.add_row(channel, amounts)
        show_table(revenue)
    if summary.skipped:
        out.print("[bold]Not uploaded[/bold] (by reason):")
        for reason, count in sorted(summary.skipped.items()):
            out.print(f"  {count:>6,}  {reason}", highlight=False)
    if summary.notes:
        out.print("[bold]Uploaded, with a caveat[/bold]:")
        for note, count in sorted(summary.notes.items()):
            out.print(f"  {count:>6,}  {note}", highlight=False)
    if summary.platform_reads:
        out.print("[bold]Read for the reports[/bold]:")
        for line in summary.platform_reads:
            out.print(f"  {line}", highlight=False, markup=False)
    if summary.retention:
        removed = ", ".join(f"{n:,} {what}" for what, n in summary.retention.items())
        out.print(f"[bold]Retention[/bold] (privacy windows): {removed}", highlight=False)
    if summary.rejections:
        out.print("[bold]Rejected by the platform[/bold] (by code):")
        for reason, count in sorted(summary.rejections.items()):
            out.print(f"  {count:>6,}  {reason}", highlight=False)
    if summary.quarantined:
        out.print(f"[bold]Quarantined records[/bold] ({len(summary.quarantined)}):")
        for q in summary.quarantined[:20]:
            row = f" (row {q.detail['row']})" if "row" in q.detail else ""
            out.print(
                f"  {q.source} {q.kind} {q.record_id}{row}: {q.field}: {q.reason}", highlight=False
            )
    for warning in summary.warnings:
        err.print(f"[yellow]warning[/yellow] {warning}")
    for failure in summary.failures:
        err.print(f"[red]error[/red] {failure}")


def exit_code(summary: RunSummary) -> int:
    if summary.status == "config_error":
        return EXIT_CONFIG
    if summary.status == "failed":
        return EXIT_FAILED
    if summary.status == "stopped":
        return EXIT_STOPPED
    if summary.status == "busy":
        return EXIT_BUSY
    return EXIT_PARTIAL if summary.status == "partial" else EXIT_OK


@app.command()
def sync(
    config: ConfigOption = None,
    database_url: DatabaseOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the run summary as JSON.")] = False,
    replan: Annotated[
        bool,
        typer.Option(help="Match and plan every stored won deal again (after new imports)."),
    ] = False,
    metrics_file: Annotated[
        Path | None,
        typer.Option(help="Write the run's metrics here (node_exporter textfile collector)."),
    ] = None,
    metrics_push: Annotated[
        str | None,
        typer.Option(metavar="GATEWAY", help="Push the run's metrics to a Pushgateway."),
    ] = None,
    dry_run: Annotated[
        Path | None,
        typer.Option(
            "--dry-run",
            metavar="DIR",
            help="Read, match, attribute and plan on a scratch copy of the store; write the "
            "exact request bodies under DIR; change nothing in the store, the CRM or any "
            "platform.",
        ),
    ] = None,
) -> None:
    """Run the loop once: read deals, match, attribute, plan and upload."""
    settings = cli_settings(database_url, config)
    mapping = load_mapping(settings)
    if dry_run is not None:
        _dry_run(settings, mapping, dry_run, as_json)
        return
    engine = store_engine(settings, uploads=True)
    with stop_on_signals() as stop:
        summary = run_sync(
            engine, mapping, settings, show_progress=not as_json, replan=replan, stop=stop
        )
    if metrics_file is not None or metrics_push is not None:
        from revsync import metrics

        metrics.observe(summary)
        if metrics_file is not None:
            metrics.write_textfile(metrics_file)
        if metrics_push is not None:
            try:
                metrics.push(metrics_push)
            except OSError as exc:  # the run is done; its metrics are only late
                log.warning("metrics not pushed to %s: %s", metrics_push, type(exc).__name__)
    if as_json:  # one line, for log collectors
        line = json.dumps(summary.as_dict(), default=str)
        out.print(line, soft_wrap=True, highlight=False, markup=False)
    else:
        print_summary(summary)
    raise typer.Exit(exit_code(summary))


@app.command()
def worker(
    every: Annotated[str | None, typer.Option(help="Run every DURATION: 90s, 15m, 2h, 1d.")] = None,
    cron: Annotated[
        str | None, typer.Option(help="Run on a cron schedule in UTC, e.g. '*/15 * * * *'.")
    ] = None,
    config: ConfigOption = None,
    database_url: DatabaseOption = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print each run's summary as one JSON line.")
    ] = False,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            envvar="REVSYNC_METRICS_PORT",
            min=1,
            max=65535,
            help="Serve /metrics, /healthz and /readyz on this port.",
        ),
    ] = None,
    max_failures: Annotated[
        int,
        typer.Option(
            min=0,
            help="Exit 1 after this many failed or skipped runs in a row "
            "(bad credentials or mapping need a human); 0: never.",
        ),
    ] = 5,
) -> None:
    """Run the loop on a schedule until SIGTERM or SIGINT.

    The first run starts at once. A stop signal ends the run in progress after its page
    or batch and exits 0. The mapping file is read again for every run: a run it cannot
    start with is skipped and logged, and the worker goes on.
    """
    from revsync.sync.worker import GaveUp, run_worker, schedule

    try:
        plan = schedule(every, cron)
    except ConfigError as exc:
        raise config_failure(exc) from None
    settings = cli_settings(database_url, config)
    load_mapping(settings)  # a broken mapping file at start-up is an error, not a warning
    engine = store_engine(settings, uploads=True)

    from revsync import metrics

    health = metrics.Health(lambda: _store_answers(engine), stuck_after=6 * 3600)
    if metrics_port is not None:
        metrics.serve(metrics_port, health)

    def once() -> str:
        try:
            job = sync_job(engine, load_config(settings.config), settings, stop=stop)
        except ConfigError as exc:
            for problem in exc.problems:
                log.error("run skipped: %s", problem)
            return _skipped(as_json, [str(p) for p in exc.problems])
        except Exception as exc:  # a bug, not the admin's: the worker still lives to the next tick
            log.exception("run skipped: could not start a run with %s", settings.config)
            return _skipped(as_json, [f"internal error: {type(exc).__name__}"])
        health.begin()
        try:
            summary = job.run()
        finally:
            health.end()
        metrics.observe(summary)
        if as_json:
            out.print(json.dumps(summary.as_dict(), default=str), soft_wrap=True,
                      highlight=False, markup=False)  # fmt: skip
        else:
            out.print(one_line(summary), soft_wrap=True, highlight=False, markup=False)
        return summary.status

    with stop_on_signals() as stop:
        err.print(f"revsync worker: {plan}; SIGTERM or SIGINT stops it", highlight=False,
                  soft_wrap=True)  # fmt: skip
        try:
            runs = run_worker(once, plan, stop, lambda: datetime.now(UTC), max_failures)
        except GaveUp as exc:
            err.print(f"[red]error[/red] revsync worker: {exc}; exiting for a human to look "
                      "(the errors are logged above)", highlight=False)  # fmt: skip
            raise typer.Exit(EXIT_FAILED) from None
    err.print(f"revsync worker: stopped after {runs} run(s)", highlight=False)
    raise typer.Exit(EXIT_OK)


def _skipped(as_json: bool, problems: list[str]) -> str:
    """A run that could not start says so on stdout too (one JSON line with ``--json``)."""
    from revsync.sync.worker import SKIPPED

    if as_json:
        line = json.dumps({"status": SKIPPED, "problems": problems})
        out.print(line, soft_wrap=True, highlight=False, markup=False)
    else:
        out.print(f"run skipped: {'; '.join(problems)}", soft_wrap=True, highlight=False,
                  markup=False)  # fmt: skip
    return SKIPPED


def _store_answers(engine: Engine) -> bool:
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
    except Exception:  # any failure means not ready
        return False
    return True


def _dry_run(settings: Settings, mapping: RevsyncConfig, directory: Path, as_json: bool) -> None:
    import tempfile

    from revsync.sync.dry_run import dry_mapping, scratch_copy

    engine = store_engine(settings, read_only=True)
    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch_dir:
        scratch = scratch_copy(engine, Path(scratch_dir) / "dry-run.db")
        summary = run_sync(
            scratch, dry_mapping(mapping, directory), settings, show_progress=not as_json
        )
        scratch.dispose()
    if as_json:
        line = json.dumps({**summary.as_dict(), "dry_run": str(directory)}, default=str)
        out.print(line, soft_wrap=True, highlight=False, markup=False)
    else:
        print_summary(summary)
        out.print(f"dry run: the request bodies are under {directory}; nothing changed in "
                          "the store, the CRM or any platform", highlight=False)  # fmt: skip
    raise typer.Exit(exit_code(summary))


def one_line(summary: RunSummary) -> str:
    """A run in one log line: status, time, deals read, conversions planned and sent."""
    read = ", ".join(f"{n:,} from {s}" for s, n in summary.deals_read.items()) or "none"
    planned = ", ".join(f"{n:,} {d}" for d, n in summary.planned.items()) or "none"
    sent = ", ".join(
        f"{tally.get('sent', 0):,} {d}" for d, tally in summary.results.items()
    ) or "none"  # fmt: skip
    line = (f"run {summary.run_id} {summary.status} in {summary.seconds:.1f}s: deals read "
            f"{read}; planned {planned}; sent {sent}")  # fmt: skip
    extras = [f"warnings: {'; '.join(summary.warnings)}"] if summary.warnings else []
    extras += [f"failures: {'; '.join(summary.failures)}"] if summary.failures else []
    extras += [f"{len(summary.quarantined)} quarantined"] if summary.quarantined else []
    return "; ".join([line, *extras])


@app.command()
def demo(
    directory: Annotated[Path, typer.Argument(help="Where to write the demo.")] = Path(
        "revsync-demo"
    ),
    visitors: Annotated[int, typer.Option(min=10, help="Visitors to generate.")] = 5_000,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 7,
) -> None:
    """Generate a realistic dataset, sync it to file destinations and print a summary."""
    from revsync.demo import DEMO_CONFIG, generate
    from revsync.demo import told as demo_told

    started = time.perf_counter()
    directory.mkdir(parents=True, exist_ok=True)
    stale = [directory / f"revsync.db{suffix}" for suffix in ("", "-wal", "-shm")]
    for path in [*stale, *(directory / "out").glob("*.jsonl")]:
        path.unlink(missing_ok=True)
    config_path = directory / "revsync.yaml"
    config_path.write_text(DEMO_CONFIG, encoding="utf-8")
    database_url = f"sqlite:///{(directory / 'revsync.db').resolve()}"
    settings = cli_settings(database_url, config_path)
    out.print(f"Generating {visitors:,} visitors over 90 days in {directory}/ …")
    files = generate(directory, visitors=visitors, seed=seed)
    out.print(
        f"  {files.counts['touchpoints']:,} sessions, {files.counts['leads']:,} leads, "
        f"{files.counts['deals']:,} CRM deals ({files.counts['won']:,} won) + 4 malformed rows"
    )
    mapping = load_mapping(settings)
    engine = store_engine(settings)
    tp_report = import_touchpoints(engine, files.touchpoints, mapping.channels, mapping.privacy)
    print_import("touchpoints", tp_report)
    id_report = import_identities(engine, files.leads, mapping.matching.default_phone_region)
    print_import("identities", id_report)
    assert files.spend is not None
    print_import("spend rows", import_spend(engine, files.spend))
    summary = run_sync(engine, mapping, settings, show_progress=True)
    print_summary(summary)
    again = SyncJob(
        engine,
        mapping,
        build_sources(mapping, settings),
        build_destinations(mapping, settings),
    ).run()
    out.print(
        f"Second sync on the same store: {sum(again.planned.values())} new conversions planned "
        "(idempotent)."
    )
    told = Table(
        title="What each platform was told: one conversion per won deal at most, worth the "
        "revenue credited to its own touchpoints (GA4: all of it)",
        title_justify="left",
    )
    for column in ("destination", "conversions", "won deals", "value sent", "won revenue"):
        told.add_column(column, justify="left" if column == "destination" else "right")
    for name, count, won, values, revenue in demo_told(engine):
        told.add_row(name, f"{count:,}", f"{won:,}", amounts(values), amounts(revenue))
    show_table(told)
    out.print(f"Request bodies per platform: {directory / 'out'}/")
    for path in sorted((directory / "out").glob("*.jsonl")):
        lines = sum(1 for _ in path.open(encoding="utf-8"))
        out.print(f"  {path.name}: {lines:,} requests")
    report_sources(by="campaign", config=config_path, database_url=database_url)
    report_all(html=directory / "report.html", config=config_path, database_url=database_url)
    out.print(
        f"Done in {time.perf_counter() - started:.1f}s. Open {directory / 'report.html'} in a "
        "browser for the charts; by keyword: revsync report sources --by keyword "
        f"--config {config_path} --database-url {database_url}\nSync again with:\n"
        f"  revsync sync --config {config_path} --database-url {database_url}\n"
        "Capture a website's sessions into this store (README: Website capture):\n"
        f"  revsync serve --config {config_path} --database-url {database_url}\n"
        "  then, on a page served from http://localhost:8000: <script async "
        'src="http://127.0.0.1:8080/v1/revsync.js?site=demo-site-0001"></script>'
    )
