"""``revsync runs``, ``state`` and ``db``: run history, source watermarks, migrations."""

from __future__ import annotations

import json
from typing import Annotated, Any, NoReturn

import typer
from rich.table import Table
from sqlalchemy import Connection, Engine, delete, select
from sqlalchemy.exc import OperationalError

from revsync.cli.base import (
    EXIT_CONFIG,
    EXIT_FAILED,
    DatabaseOption,
    app,
    cli_settings,
    config_failure,
    db_app,
    err,
    out,
    show_table,
    store_engine,
)
from revsync.errors import ConfigError
from revsync.store import queries
from revsync.store.engine import create_store_engine, revisions, store_missing, upgrade, upgrade_sql
from revsync.store.schema import runs, sync_state

runs_app = typer.Typer(
    help="Past runs: status, figures, warnings (their stored summaries).",
    invoke_without_command=True,
)
state_app = typer.Typer(help="Where each source resumes (its watermark).", no_args_is_help=True)
app.add_typer(runs_app, name="runs")
app.add_typer(state_app, name="state")
YesOption = Annotated[bool, typer.Option("--yes", help="Apply; without it, a dry run.")]


@runs_app.callback()
def runs_list(
    ctx: typer.Context,
    last: Annotated[int, typer.Option(min=1, help="How many of the newest runs.")] = 20,
    database_url: DatabaseOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
) -> None:
    """The newest runs, newest first (``revsync runs show ID`` for one)."""
    if ctx.invoked_subcommand is not None:
        return
    engine = store_engine(cli_settings(database_url), read_only=True)
    with engine.connect() as conn:
        rows = conn.execute(runs.select().order_by(runs.c.id.desc()).limit(last)).mappings().all()
    if as_json:
        for row in rows:
            out.print(json.dumps(_run(row), default=str), soft_wrap=True, highlight=False)
        return
    table = Table(title=f"Runs ({len(rows)}, newest first)", title_justify="left")
    for column in ("run", "started (UTC)", "seconds", "status", "deals read", "sent", "warnings"):
        table.add_column(column, justify="right" if column in ("seconds", "deals read", "sent")
                         else "left")  # fmt: skip
    for row in rows:
        summary = row["summary"] or {}
        sent = sum(r.get("sent", 0) for r in (summary.get("results") or {}).values())
        table.add_row(str(row["id"]), f"{row['started_at']:%Y-%m-%d %H:%M:%S}",
                      f"{summary.get('seconds', 0):.1f}", str(row["status"]),
                      f"{sum((summary.get('deals_read') or {}).values()):,}", f"{sent:,}",
                      str(len(summary.get("warnings") or [])))  # fmt: skip
    show_table(table)


@runs_app.command("show")
def runs_show(
    run_id: Annotated[int, typer.Argument(help="The run's number (revsync runs).")],
    database_url: DatabaseOption = None,
) -> None:
    """One run's stored summary, as JSON."""
    engine = store_engine(cli_settings(database_url), read_only=True)
    with engine.connect() as conn:
        row = conn.execute(runs.select().where(runs.c.id == run_id)).mappings().first()
    if row is None:
        err.print(f"[red]error[/red] no run {run_id} in the store", highlight=False)
        raise typer.Exit(EXIT_CONFIG)
    out.print_json(json.dumps(_run(row), default=str))


def _run(row: Any) -> dict[str, Any]:
    return {"run_id": row["id"], "started_at": row["started_at"], "finished_at":
            row["finished_at"], "status": row["status"], "summary": row["summary"]}  # fmt: skip


@state_app.command("show")
def state_show(database_url: DatabaseOption = None) -> None:
    """Each source's watermark: the next run reads what changed after it (less the
    source's overlap)."""
    engine = store_engine(cli_settings(database_url), read_only=True)
    with engine.connect() as conn:
        rows = conn.execute(select(sync_state).order_by(sync_state.c.source)).all()
    table = Table(title="Source watermarks", title_justify="left")
    for column in ("source", "watermark", "updated (UTC)"):
        table.add_column(column)
    for source, watermark, updated in rows:
        table.add_row(source, watermark or "", f"{updated:%Y-%m-%d %H:%M:%S}")
    show_table(table)


@state_app.command("set")
def state_set(
    source: Annotated[str, typer.Argument(help="The source's name.")],
    watermark: Annotated[str, typer.Argument(help="Where to resume, e.g. 2026-11-01T00:00:00Z")],
    yes: YesOption = False,
    database_url: DatabaseOption = None,
) -> None:
    """Move a source's watermark (to re-read from a time); a dry run unless --yes."""
    _change(source, watermark, yes, database_url)


@state_app.command("reset")
def state_reset(
    source: Annotated[str, typer.Argument(help="The source's name.")],
    yes: YesOption = False,
    database_url: DatabaseOption = None,
) -> None:
    """Forget a source's watermark: its next run reads everything again (the ledger keeps
    what was sent, so nothing is uploaded twice); a dry run unless --yes."""
    _change(source, None, yes, database_url)


def _change(source: str, watermark: str | None, yes: bool, database_url: str | None) -> None:
    engine = store_engine(cli_settings(database_url), read_only=True)
    with engine.connect() as conn, conn.begin():
        before = queries.get_watermark(conn, source)
        if before is None and not _known(conn, source):
            err.print(f"[red]error[/red] no source {source!r} has run against this store",
                      highlight=False)  # fmt: skip
            raise typer.Exit(EXIT_CONFIG)
        if yes and watermark is None:
            conn.execute(delete(sync_state).where(sync_state.c.source == source))
        elif yes:
            queries.set_watermark(conn, source, watermark)
    after = watermark or "(none: the next run reads everything)"
    verb = "moved" if yes else "would move (dry run; --yes applies it)"
    out.print(f"{source}: {verb} from {before or '(none)'} to {after}", highlight=False)


def _known(conn: Connection, source: str) -> bool:
    return (
        conn.execute(select(sync_state.c.source).where(sync_state.c.source == source)).first()
        is not None
    )


@db_app.command("current")
def db_current(database_url: DatabaseOption = None) -> None:
    """The store's schema revision and the newest one revsync has."""
    current, history = _revisions(database_url)
    head = history[-1][0]
    state = "up to date" if current == head else "behind: run `revsync db upgrade`"
    out.print(f"store at {current or '(empty)'}; newest {head}: {state}", highlight=False)


@db_app.command("history")
def db_history(database_url: DatabaseOption = None) -> None:
    """Every migration, oldest first, marking the ones the store has."""
    current, history = _revisions(database_url)
    applied = bool(current)
    for revision, title in history:
        out.print(f"{'applied' if applied else 'pending'}  {revision}  {title}",
                  highlight=False, soft_wrap=True)  # fmt: skip
        applied = applied and revision != current


@db_app.command("upgrade")
def db_upgrade(
    database_url: DatabaseOption = None,
    sql: Annotated[bool, typer.Option(help="Print the SQL instead of applying it.")] = False,
) -> None:
    """Apply pending schema migrations (one process at a time; others wait), saying which."""
    engine = _engine(database_url)
    try:
        if sql:
            out.print(upgrade_sql(engine), markup=False, highlight=False, soft_wrap=True)
            return
        before, history = revisions(engine)
        upgrade(engine)
        after, _ = revisions(engine)
    except OperationalError as exc:
        _unreachable(engine, exc)
    names = [r for r, _ in history]
    start = names.index(before) + 1 if before in names else 0
    applied = names[start : names.index(after) + 1] if after in names else []
    if applied:
        out.print(f"applied {', '.join(applied)}; the store is at {after}", highlight=False)
    else:
        out.print(f"nothing to apply: the store is at {after}, the newest", highlight=False)


def _engine(database_url: str | None) -> Engine:
    try:
        return create_store_engine(cli_settings(database_url).database_url)
    except ConfigError as exc:
        raise config_failure(exc) from None


def _unreachable(engine: Engine, exc: OperationalError) -> NoReturn:
    where = engine.url.render_as_string(hide_password=True)
    err.print(f"[red]error[/red] cannot reach the store at {where}: {type(exc.orig).__name__}",
              highlight=False)  # fmt: skip
    raise typer.Exit(EXIT_FAILED)


def _revisions(database_url: str | None) -> tuple[str | None, list[tuple[str, str]]]:
    if store_missing(cli_settings(database_url).database_url):
        err.print("[red]error[/red] there is no store at that path yet", highlight=False)
        raise typer.Exit(EXIT_FAILED)
    engine = _engine(database_url)
    try:
        return revisions(engine)
    except OperationalError as exc:
        _unreachable(engine, exc)
