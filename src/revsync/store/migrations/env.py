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
if context.is_offline_mode():  # `revsync db upgrade --sql`: the SQL, for a DBA to run
    context.configure(
        url=engine.url,
        target_metadata=metadata,
        literal_binds=True,
        render_as_batch=engine.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()
else:
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
        context.configure(
            connection=connection,
            target_metadata=metadata,
            render_as_batch=connection.dialect.name == "sqlite",
        )
        context.run_migrations()
