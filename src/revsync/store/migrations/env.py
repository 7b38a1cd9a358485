"""Alembic environment: runs against the engine revsync hands over (never a URL in a file)."""

from __future__ import annotations

from alembic import context

from revsync.store.schema import metadata

engine = context.config.attributes["engine"]
with engine.begin() as connection:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    context.run_migrations()
