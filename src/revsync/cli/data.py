"""``revsync import``, ``db upgrade``, ``config validate`` and ``init``."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from revsync.cli.base import (
    EXIT_CONFIG,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_PARTIAL,
    ConfigOption,
    DatabaseOption,
    app,
    cli_settings,
    config_app,
    config_failure,
    err,
    import_app,
    load_mapping,
    out,
    print_import,
    store_engine,
)
from revsync.collect.importer import import_identities, import_touchpoints
from revsync.config.loader import config_warnings, load_config
from revsync.config.mapping import RevsyncConfig
from revsync.errors import ConfigError, RevsyncError

T = TypeVar("T")


class Platform(StrEnum):
    google_ads = "google_ads"
    meta = "meta"


def import_file(
    kind: str, file: Path, rejects: Path | None, config: Path | None, url: str | None
) -> None:
    settings = cli_settings(url, config)
    try:
        present = settings.config.exists()
    except (OSError, ValueError):  # a name too long to look up: the loader says so, exit 2
        present = True
    mapping = load_mapping(settings) if present else RevsyncConfig(sources=[])
    engine = store_engine(settings)
    try:
        if kind == "spend":
            from revsync.collect.spend import import_spend

            report = import_spend(engine, file, rejects)
        elif kind == "rates":
            from revsync.collect.spend import import_rates

            report = import_rates(engine, file, rejects)
        elif kind == "touchpoints":
            report = import_touchpoints(engine, file, mapping.channels, mapping.privacy, rejects)
        else:
            report = import_identities(engine, file, mapping.matching.default_phone_region, rejects)
    except ConfigError as exc:
        raise config_failure(exc) from None
    print_import({"spend": "spend rows", "rates": "exchange rates"}.get(kind, kind), report)
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
    import_file("touchpoints", file, rejects, config, database_url)


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
    import_file("identities", file, rejects, config, database_url)


@import_app.command("rates")
def import_rates_command(
    file: FileArg, rejects: RejectsOption = None, config: ConfigOption = None,
    database_url: DatabaseOption = None,
) -> None:  # fmt: skip
    """Import daily exchange rates for the reports' currency: date, base, quote, rate
    (1 base = rate quote). A (date, base, quote) imported again takes the new rate."""
    import_file("rates", file, rejects, config, database_url)


@import_app.command("spend")
def import_spend_command(
    file: Annotated[Path | None, typer.Argument(help="CSV or JSONL file.")] = None,
    platform: Annotated[
        Platform | None,
        typer.Option("--from", help="Read through the API of google_ads or meta instead."),
    ] = None,
    days: Annotated[
        int, typer.Option(min=1, max=1100, help="With --from: days of the first read.")
    ] = 30,
    lookback: Annotated[
        int,
        typer.Option(
            min=0, max=90, help="With --from: days before the last stored one to re-read."
        ),
    ] = 3,
    rejects: RejectsOption = None,
    config: ConfigOption = None,
    database_url: DatabaseOption = None,
) -> None:
    """Import daily ad spend from a file or from the ad platforms.

    FILE columns: date, platform, account, campaign, cost, currency, clicks, impressions
    (optionally campaign_id, ad_group, keyword). A day imported again replaces its figures.
    With --from, campaign (and Google Ads keyword) rows per day of the accounts named in the
    mapping's destinations: the first read covers --days days, later ones start --lookback
    days before the last stored day."""
    if (file is None) == (platform is None):
        err.print("[red]error[/red] give a FILE or --from google_ads|meta (not both)")
        raise typer.Exit(EXIT_CONFIG)
    if file is not None:
        import_file("spend", file, rejects, config, database_url)
    assert platform is not None
    from revsync.collect.ad_spend import read_spend

    for read in _from_platforms(read_spend, config, database_url, platform.value, days, lookback):
        out.print(
            f"{read.platform} {read.account}: {read.rows} spend rows for {read.first}..{read.last}",
            markup=False,
        )


def _from_platforms(read: Callable[..., list[T]], config: Path | None,
                    database_url: str | None, *args: Any) -> list[T]:  # fmt: skip
    """``read(engine, mapping, settings, *args[:1], now, *args[1:])`` with the mapping's
    store and accounts; configuration problems exit 2, platform failures exit 1."""
    settings = cli_settings(database_url, config)
    mapping = load_mapping(settings)
    engine = store_engine(settings)
    try:
        return read(engine, mapping, settings, *args[:1], datetime.now(UTC), *args[1:])
    except ConfigError as exc:
        raise config_failure(exc) from None
    except RevsyncError as exc:
        err.print(f"error {exc}", markup=False, soft_wrap=True)
        raise typer.Exit(EXIT_FAILED) from None


@import_app.command("clicks")
def import_clicks_command(config: ConfigOption = None, database_url: DatabaseOption = None) -> None:
    """Resolve stored gclids of the last 90 days to campaign, ad group and keyword
    (Google Ads click_view), for the source report's keywords without UTMs."""
    from revsync.collect.ad_spend import read_clicks

    for read in _from_platforms(read_clicks, config, database_url):
        out.print(
            f"{read.asked} gclids: {read.resolved} resolved, {read.unknown} unknown to Google",
            markup=False,
        )


@config_app.command("validate")
def config_validate(
    file: Annotated[Path | None, typer.Argument(help="Mapping file.")] = None,
) -> None:
    """Check a mapping file; print every problem with file, line, key path and a hint."""
    path = file or cli_settings().config
    try:
        mapping = load_config(path)
    except ConfigError as exc:
        raise config_failure(exc) from None
    counts = f"{len(mapping.sources)} source(s), {len(mapping.destinations)} destination(s)"
    out.print(f"{path}: OK — {counts}", markup=False, emoji=False, highlight=False)
    for warning in config_warnings(path, mapping):
        err.print(f"warning {warning}", markup=False, emoji=False, highlight=False, soft_wrap=True)


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
    example = Path(__file__).parents[1] / "config" / "revsync.example.yaml"
    file.write_text(example.read_text(encoding="utf-8"), encoding="utf-8")
    out.print(f"wrote {file}; edit it, then run `revsync config validate {file}`")
