"""The ``revsync`` command.

Exit codes: 0 success, 1 run failed, 2 configuration error, 3 partial (rows rejected or
quarantined).
"""

from __future__ import annotations

import gc
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text
from sqlalchemy import Engine

from revsync.collect.importer import ImportReport, import_identities, import_touchpoints
from revsync.config.loader import load_config
from revsync.config.mapping import RevsyncConfig
from revsync.config.settings import Settings, durable_store, load_settings
from revsync.errors import ConfigError, RevsyncError
from revsync.store.engine import open_store, upgrade
from revsync.sync.factory import build_destinations, build_sources
from revsync.sync.job import SyncJob
from revsync.sync.summary import RunSummary

app = typer.Typer(
    help="revsync: closed-won CRM revenue back to Google Ads, GA4 and Meta.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="Store maintenance.", no_args_is_help=True)
config_app = typer.Typer(help="Mapping file tools.", no_args_is_help=True)
import_app = typer.Typer(help="Bulk import of touchpoints and identities.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(config_app, name="config")
report_app = typer.Typer(help="Reports read from the store.", no_args_is_help=True)
app.add_typer(import_app, name="import")
app.add_typer(report_app, name="report")
ledger_app = typer.Typer(
    help="The upload ledger: what went where, and settling what revsync cannot decide.",
    no_args_is_help=True,
)
app.add_typer(ledger_app, name="ledger")

out = Console()
err = Console(stderr=True)
log = logging.getLogger(__name__)
# Off a terminal (piped, redirected) Rich assumes 80 columns and cuts wide tables' figures
# ("785,2…"): there, tables print at their natural width instead.
_UNCUT = 10_000


def _show(table: Table) -> None:
    (out if out.is_terminal else Console(file=out.file, width=_UNCUT)).print(table)


@app.callback()
def _command(ctx: typer.Context) -> None:
    # What the imports built (SDK modules, protobuf descriptors, pydantic models) lives as
    # long as the process. Freezing it keeps the cyclic GC's full passes, which a run's
    # millions of short-lived rows trigger, from re-scanning it each time. (Garbage frozen
    # with it is collected after ``unfreeze``; a collection first would cost ~50 ms.)
    gc.freeze()
    ctx.call_on_close(gc.unfreeze)


EXIT_OK, EXIT_FAILED, EXIT_CONFIG, EXIT_PARTIAL, EXIT_STOPPED, EXIT_BUSY = 0, 1, 2, 3, 4, 5

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="Mapping file (default: $REVSYNC_CONFIG or revsync.yaml)."),
]
DatabaseOption = Annotated[
    str | None,
    typer.Option("--database-url", help="Store URL (default: $REVSYNC_DATABASE_URL or SQLite)."),
]


def _settings(database_url: str | None = None, config: Path | None = None) -> Settings:
    try:
        settings = load_settings()
    except ConfigError as exc:  # a bad REVSYNC_* value: named, never echoed
        raise _fail_config(exc) from None
    updates: dict[str, Any] = {}
    if database_url:
        updates["database_url"] = database_url
    if config:
        updates["config"] = config
    settings = settings.model_copy(update=updates)
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if settings.log_level.upper() != "DEBUG":
        logging.getLogger("alembic").setLevel(logging.WARNING)
    return settings


def _fail_config(exc: ConfigError) -> typer.Exit:
    from rich.markup import escape

    for problem in exc.problems:  # escaped: a problem quotes the file's text; no ":100:" emoji
        err.print(f"[red]error[/red] {escape(problem)}", highlight=False, soft_wrap=True,
                  emoji=False)  # fmt: skip
    return typer.Exit(EXIT_CONFIG)


def _load(settings: Settings) -> RevsyncConfig:
    try:
        return load_config(settings.config)
    except ConfigError as exc:
        raise _fail_config(exc) from None


def _engine(settings: Settings, uploads: bool = False) -> Engine:
    """The store; for a command that uploads (``uploads``), only a store that lasts."""
    try:
        if uploads:
            durable_store(settings)
        return open_store(settings.database_url)
    except ConfigError as exc:
        raise _fail_config(exc) from None
    except RevsyncError as exc:
        err.print(f"[red]error[/red] {exc}")
        raise typer.Exit(EXIT_FAILED) from None


@contextmanager
def _progress(enabled: bool) -> Iterator[Callable[[str, int, int | None], None]]:
    """A Rich progress display on a terminal; plain lines (at most one per second) else."""
    if enabled and out.is_terminal:
        with Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.completed:,}"),
            TimeElapsedColumn(),
            console=out,
            transient=True,
        ) as bar:
            tasks: dict[str, Any] = {}

            def update(stage: str, done: int, total: int | None) -> None:
                if stage not in tasks:
                    tasks[stage] = bar.add_task(stage, total=total)
                bar.update(tasks[stage], completed=done, total=total)

            yield update
        return
    last: dict[str, float] = {}

    def plain(stage: str, done: int, total: int | None) -> None:
        now = time.monotonic()
        if enabled and now - last.get(stage, 0.0) >= 1.0:
            last[stage] = now
            suffix = f"/{total:,}" if total else ""
            err.print(f"{stage}: {done:,}{suffix}", highlight=False)

    yield plain


def _sync_job(
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
        job = _sync_job(engine, config, settings, replan, stop)
    except ConfigError as exc:
        raise _fail_config(exc) from None
    with _progress(show_progress) as progress:
        job.progress = progress
        return job.run()


@contextmanager
def _stop_on_signals() -> Iterator[threading.Event]:
    """SIGTERM and SIGINT set the event: the run stops after its page or batch, with what
    it did committed. A second signal ends the process at once."""
    stop = threading.Event()

    def handle(signum: int, _frame: Any) -> None:
        if stop.is_set():
            raise SystemExit(128 + signum)
        stop.set()
        err.print(f"{signal.Signals(signum).name}: stopping after the page or batch in "
                  "progress (send it again to quit at once)", soft_wrap=True)  # fmt: skip

    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


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
    _show(table)
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
        _show(revenue)
    if summary.skipped:
        out.print("[bold]Not uploaded[/bold] (by reason):")
        for reason, count in sorted(summary.skipped.items()):
            out.print(f"  {count:>6,}  {reason}", highlight=False)
    if summary.notes:
        out.print("[bold]Uploaded, with a caveat[/bold]:")
        for note, count in sorted(summary.notes.items()):
            out.print(f"  {count:>6,}  {note}", highlight=False)
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


def _exit_code(summary: RunSummary) -> int:
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
) -> None:
    """Run the loop once: read deals, match, attribute, plan and upload."""
    settings = _settings(database_url, config)
    mapping = _load(settings)
    engine = _engine(settings, uploads=True)
    with _stop_on_signals() as stop:
        summary = run_sync(
            engine, mapping, settings, show_progress=not as_json, replan=replan, stop=stop
        )
    if as_json:
        out.print_json(json.dumps(summary.as_dict(), default=str))
    else:
        print_summary(summary)
    raise typer.Exit(_exit_code(summary))


@app.command()
def worker(
    every: Annotated[
        str | None, typer.Option(help="Run every DURATION: 90s, 15m, 2h, 1d.")
    ] = None,
    cron: Annotated[
        str | None, typer.Option(help="Run on a cron schedule in UTC, e.g. '*/15 * * * *'.")
    ] = None,
    config: ConfigOption = None,
    database_url: DatabaseOption = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print each run's summary as one JSON line.")
    ] = False,
) -> None:
    """Run the loop on a schedule until SIGTERM or SIGINT.

    The first run starts at once. A stop signal ends the run in progress after its page
    or batch and exits 0. The mapping file is read again for every run: a run it cannot
    start with is skipped and logged, and the worker goes on.
    """
    from revsync.sync.worker import run_worker, schedule

    try:
        plan = schedule(every, cron)
    except ConfigError as exc:
        raise _fail_config(exc) from None
    settings = _settings(database_url, config)
    _load(settings)  # a broken mapping file at start-up is an error, not a warning
    engine = _engine(settings, uploads=True)

    def once() -> None:
        try:
            job = _sync_job(engine, load_config(settings.config), settings, stop=stop)
        except ConfigError as exc:
            for problem in exc.problems:
                log.error("run skipped: %s", problem)
            return
        except Exception:  # a bug, not the admin's: the worker still lives to the next tick
            log.exception("run skipped: could not start a run with %s", settings.config)
            return
        summary = job.run()
        if as_json:
            out.print(json.dumps(summary.as_dict(), default=str), soft_wrap=True,
                      highlight=False, markup=False)  # fmt: skip
        else:
            out.print(_one_line(summary), soft_wrap=True, highlight=False, markup=False)

    with _stop_on_signals() as stop:
        err.print(f"revsync worker: {plan}; SIGTERM or SIGINT stops it", highlight=False,
                  soft_wrap=True)  # fmt: skip
        runs = run_worker(once, plan, stop, lambda: datetime.now(UTC))
    err.print(f"revsync worker: stopped after {runs} run(s)", highlight=False)
    raise typer.Exit(EXIT_OK)


def _one_line(summary: RunSummary) -> str:
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
    settings = _settings(database_url, config_path)
    out.print(f"Generating {visitors:,} visitors over 90 days in {directory}/ …")
    files = generate(directory, visitors=visitors, seed=seed)
    out.print(
        f"  {files.counts['touchpoints']:,} sessions, {files.counts['leads']:,} leads, "
        f"{files.counts['deals']:,} CRM deals ({files.counts['won']:,} won) + 4 malformed rows"
    )
    mapping = _load(settings)
    engine = _engine(settings)
    tp_report = import_touchpoints(engine, files.touchpoints, mapping.channels, mapping.privacy)
    _print_import("touchpoints", tp_report)
    id_report = import_identities(engine, files.leads, mapping.matching.default_phone_region)
    _print_import("identities", id_report)
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
        told.add_row(name, f"{count:,}", f"{won:,}", _amounts(values), _amounts(revenue))
    _show(told)
    out.print(f"Request bodies per platform: {directory / 'out'}/")
    for path in sorted((directory / "out").glob("*.jsonl")):
        lines = sum(1 for _ in path.open(encoding="utf-8"))
        out.print(f"  {path.name}: {lines:,} requests")
    out.print(
        f"Done in {time.perf_counter() - started:.1f}s. Sync again with:\n"
        f"  revsync sync --config {config_path} --database-url {database_url}"
    )


def _amounts(by_currency: dict[str, Decimal]) -> str:
    return ", ".join(f"{amount:,.2f} {cur}" for cur, amount in sorted(by_currency.items()))


def _print_import(kind: str, report: ImportReport) -> None:
    out.print(
        f"Imported {report.imported:,} of {report.read:,} {kind}"
        + (f"; {report.rejected:,} rejected → {report.rejects_file}" if report.rejected else "")
    )
    for line in report.errors[:10]:
        err.print(f"  [yellow]rejected[/yellow] {line}", highlight=False)


def _import(
    kind: str, file: Path, rejects: Path | None, config: Path | None, url: str | None
) -> None:
    settings = _settings(url, config)
    try:
        present = settings.config.exists()
    except (OSError, ValueError):  # a name too long to look up: the loader says so, exit 2
        present = True
    mapping = _load(settings) if present else RevsyncConfig(sources=[])
    engine = _engine(settings)
    try:
        if kind == "touchpoints":
            report = import_touchpoints(engine, file, mapping.channels, mapping.privacy, rejects)
        else:
            report = import_identities(engine, file, mapping.matching.default_phone_region, rejects)
    except ConfigError as exc:
        raise _fail_config(exc) from None
    _print_import(kind, report)
    raise typer.Exit(EXIT_PARTIAL if report.rejected else EXIT_OK)


FileArg = Annotated[Path, typer.Argument(help="CSV or JSONL file.")]
RejectsOption = Annotated[
    Path | None, typer.Option(help="Where rejected rows go (default: FILE.rejects.EXT).")
]


@import_app.command("touchpoints")
def import_touchpoints_command(
    file: FileArg,
    rejects: RejectsOption = None,
    config: ConfigOption = None,
    database_url: DatabaseOption = None,
) -> None:
    """Import sessions and clicks.

    Columns: visitor_id, occurred_at, landing_url, referrer, utm_*, gclid/gbraid/wbraid/
    fbclid, _ga, _fbp, _fbc, consent_*, user_agent, ip."""
    _import("touchpoints", file, rejects, config, database_url)


@import_app.command("identities")
def import_identities_command(
    file: FileArg,
    rejects: RejectsOption = None,
    config: ConfigOption = None,
    database_url: DatabaseOption = None,
) -> None:
    """Import leads linking visitors to people.

    Columns: visitor_id, observed_at, email, phone, crm_id, event. Email and phone are
    hashed on import; the raw values are not kept."""
    _import("identities", file, rejects, config, database_url)


@db_app.command("upgrade")
def db_upgrade(database_url: DatabaseOption = None) -> None:
    """Apply pending schema migrations."""
    settings = _settings(database_url)
    engine = _engine(settings)
    upgrade(engine)
    out.print("store is at the newest schema")


@config_app.command("validate")
def config_validate(
    file: Annotated[Path | None, typer.Argument(help="Mapping file.")] = None,
) -> None:
    """Check a mapping file; print every problem with file, line, key path and a hint."""
    path = file or _settings().config
    try:
        mapping = load_config(path)
    except ConfigError as exc:
        raise _fail_config(exc) from None
    counts = f"{len(mapping.sources)} source(s), {len(mapping.destinations)} destination(s)"
    out.print(f"{path}: OK — {counts}", markup=False, emoji=False, highlight=False)


@app.command()
def init(
    file: Annotated[Path, typer.Argument(help="Where to write the starter file.")] = Path(
        "revsync.yaml"
    ),
    force: Annotated[bool, typer.Option(help="Overwrite an existing file.")] = False,
) -> None:
    """Write a commented starter mapping file."""
    if file.exists() and not force:
        err.print(f"[red]error[/red] {file} exists; use --force to overwrite")
        raise typer.Exit(EXIT_CONFIG)
    example = Path(__file__).parent / "config" / "revsync.example.yaml"
    file.write_text(example.read_text(encoding="utf-8"), encoding="utf-8")
    out.print(f"wrote {file}; edit it, then run `revsync config validate {file}`")


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

    settings = _settings(database_url, config)
    mapping = _load(settings)
    engine = _engine(settings)
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
    _show(journey)
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
    _show(planned)


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

    settings = _settings(None, config)
    mapping = _load(settings)
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
        _show(table)
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
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Revenue by channel under each attribution model, side by side."""
    from revsync.attribution import MODEL_NAMES
    from revsync.reports.models import models_report

    settings = _settings(database_url, config)
    mapping = _load(settings)
    engine = _engine(settings)
    report, matched, fitted = models_report(engine, mapping, workers=workers)
    rows = sorted(report.items(), key=lambda item: (item[0][1], -sum(item[1].values())))
    if as_json:
        payload = [
            {"channel": ch, "currency": cur, **{m: str(v.get(m, 0)) for m in MODEL_NAMES}}
            for (ch, cur), v in rows
        ]
        out.print_json(
            json.dumps({"deals": matched, "data_driven_fitted": fitted, "rows": payload})
        )
        return
    table = Table(title=f"Revenue by channel and model ({matched:,} matched won deals)")
    table.add_column("channel")
    table.add_column("cur")
    for name in MODEL_NAMES:
        table.add_column(name.replace("_", " "), justify="right")
    for (channel, currency), values in rows:
        table.add_row(channel, currency, *(f"{values.get(m, 0):,.2f}" for m in MODEL_NAMES))
    _show(table)
    if not fitted:
        out.print(
            f"data driven: no visitor path of the last {mapping.matching.lookback_days} days "
            "led to a won deal (links are stored when `revsync sync` matches deals), so it "
            "credits like linear."
        )


def _money(value: Any, currency: str) -> str:
    """An amount in its currency's minor units, e.g. ``2,592.30 EUR``."""
    from revsync.attribution import minor_units

    return f"{Decimal(str(value)):,.{minor_units(currency)}f} {currency}"


def _state(value: str | None, option: str, allowed: Iterable[str]) -> Any:
    """The ledger state ``value`` names; a config error listing ``allowed`` otherwise."""
    from revsync.sync.ledger import State

    if value is None:
        return None
    names = sorted(allowed)
    if value not in names:
        raise _fail_config(ConfigError(f"{option} {value!r}: one of {', '.join(names)}"))
    return State(value)


@ledger_app.command("show")
def ledger_show(
    destination: Annotated[str | None, typer.Option(help="Only this destination.")] = None,
    state: Annotated[str | None, typer.Option(help="Only rows in this state.")] = None,
    deal: Annotated[str | None, typer.Option(help="Only this CRM deal's rows.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="Rows to list at most.")] = 50,
    config: ConfigOption = None,
    database_url: DatabaseOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Rows per destination and state; with --state or --deal, the rows themselves."""
    from revsync.sync import ledger

    wanted = _state(state, "--state", ledger.State)
    engine = _engine(_settings(database_url, config))
    with engine.connect() as conn:
        if wanted is None and deal is None:
            counts = ledger.counts(conn)
            if destination is not None:
                counts = {d: c for d, c in counts.items() if d == destination}
            if as_json:
                out.print_json(json.dumps(counts))
                return
            if not counts:
                out.print("the ledger is empty: no conversion planned yet", highlight=False)
                return
            states = [s.value for s in ledger.State if any(s.value in c for c in counts.values())]
            table = Table(title="Ledger rows", title_justify="left")
            table.add_column("destination")
            for name in states:
                table.add_column(name, justify="right")
            for name, by_state in sorted(counts.items()):
                table.add_row(name, *(f"{by_state.get(s, 0):,}" for s in states))
            _show(table)
            return
        found = ledger.rows_in(conn, destination, wanted, deal, limit)
    if as_json:
        out.print_json(json.dumps(found, default=str))
        return
    table = Table(title=f"Ledger rows ({len(found)} shown, newest change first)",
                  title_justify="left")  # fmt: skip
    for column in ("key", "destination", "deal", "kind", "state", "value", "attempts",
                   "error", "updated"):  # fmt: skip
        table.add_column(column, justify="right" if column in ("value", "attempts") else "left")
    for row in found:
        error = " ".join(str(row[k]) for k in ("error_code", "error_message") if row[k])
        table.add_row(
            str(row["key"]), str(row["destination"]), f"{row['source']}/{row['deal_id']}",
            str(row["kind"]), str(row["state"]), _money(row["value"], str(row["currency"])),
            str(row["attempts"]), error, f"{row['updated_at']:%Y-%m-%d %H:%M}",
        )  # fmt: skip
    _show(table)


@ledger_app.command("settle")
def ledger_settle(
    destination: Annotated[str, typer.Option(help="The destination whose rows to settle.")],
    state: Annotated[str, typer.Option(help="unknown, failed or rejected.")],
    to: Annotated[str, typer.Option("--as", help="sent (unknown only) or planned.")],
    deal: Annotated[str | None, typer.Option(help="Only this CRM deal's rows.")] = None,
    key: Annotated[str | None, typer.Option(help="Only the row with this key.")] = None,
    yes: Annotated[bool, typer.Option("--yes", help="Make the change (else: say what).")] = False,
    config: ConfigOption = None,
    database_url: DatabaseOption = None,
) -> None:
    """Settle rows revsync cannot decide itself.

    unknown (a send interrupted on a platform that does not deduplicate) as sent, when the
    platform shows it got them, or as planned, to send them again; failed (out of retries)
    or rejected rows as planned, once the cause is fixed. Without --yes, only says what
    would change.
    """
    from revsync.sync import ledger

    source = _state(state, "--state", (s.value for s in ledger.OPERATOR_MOVES))
    targets = {s.value for moves in ledger.OPERATOR_MOVES.values() for s in moves}
    target = _state(to, "--as", targets)
    if target not in ledger.OPERATOR_MOVES[source]:
        allowed = " or ".join(s.value for s in ledger.OPERATOR_MOVES[source])
        raise _fail_config(ConfigError(f"--as {to!r}: {state} rows settle as {allowed}"))
    engine = _engine(_settings(database_url, config))
    with engine.connect() as conn, conn.begin() as transaction:
        moved = ledger.settle(conn, destination, source, target, datetime.now(UTC), deal, key)
        what = (f"{moved:,} {state} row(s) of {destination}" + (f", deal {deal}," if deal else "")
                + (f", key {key}," if key else ""))  # fmt: skip
        if yes:
            transaction.commit()
            out.print(f"settled {what} as {to}", highlight=False)
            return
        transaction.rollback()  # a dry run: the count is exact, the change is undone
    out.print(f"would settle {what} as {to}; add --yes to do it", highlight=False)
    if target is ledger.State.PLANNED and source is ledger.State.UNKNOWN and moved:
        out.print(
            "careful: an interrupted send may have reached the platform, which does not "
            "deduplicate: sending it again can count it twice",
            highlight=False,
        )


def main() -> None:
    app()
