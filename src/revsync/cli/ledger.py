"""``revsync ledger show`` and ``ledger settle``."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.table import Table

from revsync.cli.base import (
    EXIT_CONFIG,
    ConfigOption,
    DatabaseOption,
    cli_settings,
    config_failure,
    err,
    ledger_app,
    money,
    out,
    show_table,
    state_option,
    store_engine,
)
from revsync.errors import ConfigError


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

    wanted = state_option(state, "--state", ledger.State)
    engine = store_engine(cli_settings(database_url, config), read_only=True)
    with engine.connect() as conn:
        if destination is not None:
            known = set(ledger.counts(conn))
            if destination not in known:
                names = ", ".join(sorted(known)) or "none yet"
                err.print(f"[red]error[/red] no destination {destination!r} in the ledger "
                          f"(it has: {names})", highlight=False)  # fmt: skip
                raise typer.Exit(EXIT_CONFIG)
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
            show_table(table)
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
            str(row["kind"]), str(row["state"]), money(row["value"], str(row["currency"])),
            str(row["attempts"]), error, f"{row['updated_at']:%Y-%m-%d %H:%M}",
        )  # fmt: skip
    show_table(table)


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

    source = state_option(state, "--state", (s.value for s in ledger.OPERATOR_MOVES))
    targets = {s.value for moves in ledger.OPERATOR_MOVES.values() for s in moves}
    target = state_option(to, "--as", targets)
    if target not in ledger.OPERATOR_MOVES[source]:
        allowed = " or ".join(s.value for s in ledger.OPERATOR_MOVES[source])
        raise config_failure(ConfigError(f"--as {to!r}: {state} rows settle as {allowed}"))
    engine = store_engine(cli_settings(database_url, config))
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
