"""What every command shares: the Typer apps, consoles, options, settings, the store,
progress and stop signals, exit codes."""

from __future__ import annotations

import gc
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.measure import Measurement
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from revsync import logs
from revsync.collect.importer import ImportReport
from revsync.config.loader import load_config
from revsync.config.mapping import RevsyncConfig
from revsync.config.settings import Settings, durable_store, load_settings
from revsync.errors import ConfigError, RevsyncError
from revsync.store.engine import open_store, store_missing

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
UNCUT = 10_000


def show_table(table: Table) -> None:
    """Print ``table`` without ever cutting a figure: right-aligned (number) columns keep
    their full width, label columns wrap instead of being cut; off a terminal the table
    prints at its natural width."""
    for column in table.columns:
        if column.justify == "right":
            cells = [str(cell) for cell in column.cells]
            column.min_width = max(map(len, [*cells, str(column.header)]), default=1)
            column.no_wrap = True
        else:
            column.overflow = "fold"
            column.min_width = min(12, max(map(len, [str(c) for c in column.cells]), default=1))
    console = out if out.is_terminal else Console(file=out.file, width=UNCUT)
    needed = Measurement.get(console, console.options.update(max_width=UNCUT), table).minimum
    if needed > console.width:  # too many figures for the screen: lines wrap, none is cut
        console = Console(file=console.file, width=needed, force_terminal=console.is_terminal)
    console.print(table)


EXIT_OK, EXIT_FAILED, EXIT_CONFIG, EXIT_PARTIAL, EXIT_STOPPED, EXIT_BUSY = 0, 1, 2, 3, 4, 5


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        out.print(f"revsync {version('revsync')}", highlight=False)
        raise typer.Exit(EXIT_OK)


@app.callback()
def _command(
    ctx: typer.Context,
    show_version: Annotated[
        bool,
        typer.Option("--version", is_eager=True, callback=_version, help="Print the version."),
    ] = False,
) -> None:
    # What the imports built (SDK modules, protobuf descriptors, pydantic models) lives as
    # long as the process. Freezing it keeps the cyclic GC's full passes, which a run's
    # millions of short-lived rows trigger, from re-scanning it each time. (Garbage frozen
    # with it is collected after ``unfreeze``; a collection first would cost ~50 ms.)
    gc.freeze()
    ctx.call_on_close(gc.unfreeze)


ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="Mapping file (default: $REVSYNC_CONFIG or revsync.yaml)."),
]
DatabaseOption = Annotated[
    str | None,
    typer.Option("--database-url", help="Store URL (default: $REVSYNC_DATABASE_URL or SQLite)."),
]


def cli_settings(database_url: str | None = None, config: Path | None = None) -> Settings:
    try:
        settings = load_settings()
    except ConfigError as exc:  # a bad REVSYNC_* value: named, never echoed
        raise config_failure(exc) from None
    updates: dict[str, Any] = {}
    if database_url:
        updates["database_url"] = database_url
    if config:
        updates["config"] = config
    settings = settings.model_copy(update=updates)
    logs.configure(settings.log_level.upper(), settings.log_format)
    return settings


def config_failure(exc: ConfigError) -> typer.Exit:
    from rich.markup import escape

    for problem in exc.problems:  # escaped: a problem quotes the file's text; no ":100:" emoji
        err.print(f"[red]error[/red] {escape(problem)}", highlight=False, soft_wrap=True,
                  emoji=False)  # fmt: skip
    return typer.Exit(EXIT_CONFIG)


def load_mapping(settings: Settings) -> RevsyncConfig:
    try:
        return load_config(settings.config)
    except ConfigError as exc:
        raise config_failure(exc) from None


def store_engine(settings: Settings, uploads: bool = False, read_only: bool = False) -> Engine:
    """The store. A command that uploads (``uploads``) gets only a store that lasts; a
    read-only one (``read_only``) never creates or migrates one; the others migrate it
    unless ``REVSYNC_AUTO_MIGRATE`` is false."""
    try:
        if uploads:
            durable_store(settings)
        if read_only and store_missing(settings.database_url):
            where = make_url(settings.database_url).database
            err.print(f"[red]error[/red] there is no store at {where}: nothing was imported or "
                      "synced with it (set REVSYNC_DATABASE_URL or --database-url)",
                      highlight=False)  # fmt: skip
            raise typer.Exit(EXIT_FAILED)
        return open_store(settings.database_url, migrate=settings.auto_migrate and not read_only)
    except ConfigError as exc:
        raise config_failure(exc) from None
    except RevsyncError as exc:
        err.print(f"[red]error[/red] {exc}", highlight=False)
        raise typer.Exit(EXIT_FAILED) from None


@contextmanager
def progress_display(enabled: bool) -> Iterator[Callable[[str, int, int | None], None]]:
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


@contextmanager
def stop_on_signals() -> Iterator[threading.Event]:
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


def amounts(by_currency: dict[str, Decimal]) -> str:
    return ", ".join(f"{amount:,.2f} {cur}" for cur, amount in sorted(by_currency.items()))


def money(value: Any, currency: str) -> str:
    """An amount in its currency's minor units, e.g. ``2,592.30 EUR``."""
    from revsync.attribution import minor_units

    return f"{Decimal(str(value)):,.{minor_units(currency)}f} {currency}"


def state_option(value: str | None, option: str, allowed: Iterable[str]) -> Any:
    """The ledger state ``value`` names; a config error listing ``allowed`` otherwise."""
    from revsync.sync.ledger import State

    if value is None:
        return None
    names = sorted(allowed)
    if value not in names:
        raise config_failure(ConfigError(f"{option} {value!r}: one of {', '.join(names)}"))
    return State(value)


def print_import(kind: str, report: ImportReport) -> None:
    out.print(
        f"Imported {report.imported:,} of {report.read:,} {kind}"
        + (f"; {report.rejected:,} rejected → {report.rejects_file}" if report.rejected else "")
    )
    for line in report.errors[:10]:
        err.print(f"  [yellow]rejected[/yellow] {line}", highlight=False)
