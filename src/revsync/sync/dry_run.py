"""``revsync sync --dry-run``: a whole run against a scratch copy of the store, with every
destination writing its exact request bodies to files and no write-back to the CRM. The
store and the platforms are left as they were; the sources are only read."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from sqlalchemy import Engine, insert

from revsync.config.destinations import GoogleAdsDestination
from revsync.config.mapping import RevsyncConfig
from revsync.store.engine import open_store
from revsync.store.schema import metadata

_BATCH = 5_000


def dry_mapping(config: RevsyncConfig, out: Path) -> RevsyncConfig:
    """``config`` with each destination writing its bodies under ``out`` instead of sending
    them (Google keeps the body of the API it would call), no write-back and no reads of
    spend or clicks for the reports."""
    destinations = []
    for block in config.destinations:
        update: dict[str, object] = {"transport": "file", "output_dir": out}
        if isinstance(block, GoogleAdsDestination) and block.transport != "file":
            update["file_format"] = (
                "data_manager" if block.transport == "data_manager" else "ads_api"
            )
        destinations.append(block.model_copy(update=update))
    sources = [
        block.model_copy(update={"push_attribution": False})
        if hasattr(block, "push_attribution") else block
        for block in config.sources
    ]  # fmt: skip
    reports = config.reports.model_copy(update={"spend_from": [], "resolve_clicks": False})
    return config.model_copy(
        update={"destinations": destinations, "sources": sources, "reports": reports}
    )


def scratch_copy(engine: Engine, path: Path) -> Engine:
    """A SQLite copy of the store at ``path``: SQLite's backup for a SQLite store, else
    every table copied over (time grows with the store)."""
    if engine.dialect.name == "sqlite" and engine.url.database:
        source, target = sqlite3.connect(engine.url.database), sqlite3.connect(path)
        with target:
            source.backup(target)
        source.close()
        target.close()
        return open_store(f"sqlite:///{path}")
    scratch = open_store(f"sqlite:///{path}")
    with engine.connect() as reader, scratch.begin() as writer:
        for table in metadata.sorted_tables:
            rows = reader.execution_options(yield_per=_BATCH).execute(table.select()).mappings()
            for batch in rows.partitions(_BATCH):
                writer.execute(insert(table), [dict(row) for row in batch])
    return scratch
