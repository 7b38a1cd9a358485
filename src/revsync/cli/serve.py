"""``revsync serve``: the website collector."""

from __future__ import annotations

from typing import Annotated

import typer

from revsync.cli.base import (
    ConfigOption,
    DatabaseOption,
    app,
    cli_settings,
    config_failure,
    load_mapping,
    out,
    store_engine,
)
from revsync.errors import ConfigError


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8080,
    config: ConfigOption = None,
    database_url: DatabaseOption = None,
) -> None:
    """Run the website collector: the snippet (GET /v1/revsync.js), POST /v1/collect,
    /v1/identify and signed /v1/leads, /healthz and /metrics (the mapping's `collector:`)."""
    from revsync.collect.server import Collector
    from revsync.collect.server import serve as run_server

    settings = cli_settings(database_url, config)
    mapping = load_mapping(settings)
    engine = store_engine(settings, uploads=True)  # events must land in a store that lasts
    try:
        collector = Collector(mapping, engine)
    except ConfigError as exc:
        raise config_failure(exc) from None
    out.print(f"revsync collector on http://{host}:{port}/ (snippet: /v1/revsync.js?site=KEY)")
    run_server(collector, host, port)
