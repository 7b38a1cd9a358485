"""``revsync forget``: erase one person from the store and the payload files."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from revsync.cli.base import (
    EXIT_CONFIG,
    ConfigOption,
    DatabaseOption,
    app,
    cli_settings,
    err,
    out,
    store_engine,
)
from revsync.config.loader import load_config
from revsync.destinations.pii import InvalidIdentifier, hash_person
from revsync.errors import ConfigError
from revsync.sync.erasure import blank_files, forget

Many = Annotated[list[str] | None, typer.Option(help="May be given several times.")]


@app.command("forget")
def forget_command(
    email: Annotated[str | None, typer.Option(help="The person's email address.")] = None,
    phone: Annotated[str | None, typer.Option(help="Their phone (E.164, or national).")] = None,
    visitor: Many = None,
    crm_id: Many = None,
    yes: Annotated[bool, typer.Option("--yes", help="Erase; without it, a dry run.")] = False,
    config: ConfigOption = None,
    database_url: DatabaseOption = None,
) -> None:
    """Erase a person: identities, visitors, touchpoints and match links deleted, contacts'
    hashes and click IDs cleared, ledger payloads stripped of identifiers (unsent rows are
    skipped), identifiers blanked in the destinations' payload files. A dry run (counts,
    nothing changed) unless --yes."""
    if not (email or phone or visitor or crm_id):
        err.print("[red]error[/red] name the person: --email, --phone, --visitor or --crm-id")
        raise typer.Exit(EXIT_CONFIG)
    settings = cli_settings(database_url, config)
    try:
        mapping = load_config(settings.config) if settings.config.exists() else None
    except ConfigError:
        mapping = None  # the store is erased all the same; files need the mapping's paths
    region = mapping.matching.default_phone_region if mapping else None
    try:
        person = hash_person(email, phone, region)
    except InvalidIdentifier as exc:
        err.print(f"[red]error[/red] {exc}", highlight=False)
        raise typer.Exit(EXIT_CONFIG) from None
    engine = store_engine(settings, read_only=True)
    with engine.connect() as conn:
        transaction = conn.begin()
        erased = forget(conn, person, visitor or [], crm_id or [], datetime.now(UTC))
        (transaction.commit if yes else transaction.rollback)()
    files = 0
    if mapping is not None and yes:
        files = blank_files({Path(d.output_dir) for d in mapping.destinations}, erased.identifiers)
    counts = ", ".join(f"{n:,} {kind}" for kind, n in erased.counts.items())
    verb = "erased" if yes else "would erase (dry run; --yes erases)"
    out.print(f"{verb}: {counts}; {files:,} payload file(s) rewritten", highlight=False)
    if yes and erased.counts.get("ledger payloads"):
        out.print("conversions already sent stay at the platforms: delete them there too "
                  "(Google Ads, GA4 user deletion, Meta) if the request covers them",
                  highlight=False)  # fmt: skip
    if mapping is None:
        out.print("no mapping file: payload files were not looked at", highlight=False)
