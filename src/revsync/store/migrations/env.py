"""Alembic environment: runs against the engine revsync hands over (never a URL in a file).

Processes that start together migrate once: on PostgreSQL the migration transaction first
takes an advisory lock (held until it commits), on SQLite ``upgrade`` begins it with
``BEGIN IMMEDIATE``; either way the others wait, then read a current ``alembic_version``."""

from __future__ import annotations

from alembic import context
from sqlalchemy import text

from revsync.store.schema import metadata

MIGRATION_LOCK = 7_265_766_863  # pg_advisory_xact_lock key: "revsync migrations"

engine = context.config.attributes["engine"]
with engine.begin() as connection:
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    context.run_migrations()
