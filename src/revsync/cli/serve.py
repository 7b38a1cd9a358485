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
    workers: Annotated[
        int,
        typer.Option(
            min=1, max=64,
            help="Collector processes sharing the port (SO_REUSEPORT); one per CPU core for "
            "throughput.",
        ),
    ] = 1,
    config: ConfigOption = None,
    database_url: DatabaseOption = None,
) -> None:  # fmt: skip
    """Run the website collector: the snippet (GET /v1/revsync.js), POST /v1/collect,
    /v1/identify and signed /v1/leads, /healthz and /metrics (the mapping's `collector:`)."""
    from revsync.collect.server import Collector
    from revsync.collect.server import serve as run_server

    settings = cli_settings(database_url, config)
    mapping = load_mapping(settings)
    engine = store_engine(settings, uploads=True)  # events must land in a store that lasts
    if workers > 1 and engine.dialect.name == "sqlite":  # one writer at a time: they'd queue
        raise config_failure(ConfigError("serve --workers above 1 needs a PostgreSQL store"))
    try:
        collector = Collector(mapping, engine)
    except ConfigError as exc:
        raise config_failure(exc) from None
    where = f"http://{host}:{port}/ (snippet: /v1/revsync.js?site=KEY)"
    if workers == 1:
        out.print(f"revsync collector on {where}")
        run_server(collector, host, port)
        return
    from revsync.collect.workers import serve_workers

    collector.close()  # the configuration is sound; each worker makes its own collector

    def worker() -> Collector:
        engine.dispose(close=False)  # the worker's own store connections, not the parent's
        return Collector(mapping, engine)

    out.print(f"revsync collector, {workers} processes, on {where}")
    raise typer.Exit(serve_workers(worker, host, port, workers))
