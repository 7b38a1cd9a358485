"""Engine factory and migrations: SQLite (WAL, foreign keys) by default, PostgreSQL in
production. ``open_store`` applies pending Alembic migrations on first use."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, create_engine, event, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, OperationalError

from revsync.errors import ConfigError, PermanentError, TransientError
from revsync.privacy import create_private

if TYPE_CHECKING:  # Alembic is imported when migrations are looked at, not by every process
    from alembic.config import Config

MIGRATIONS = Path(__file__).parent / "migrations"


def create_store_engine(url: str) -> Engine:
    """An engine for ``url``; raises ``ConfigError`` for a malformed URL."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError("REVSYNC_DATABASE_URL is not a valid SQLAlchemy URL") from None
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        if database and database != ":memory:" and not database.startswith("file:"):
            Path(database).parent.mkdir(parents=True, exist_ok=True)
            create_private(Path(database))  # SQLite gives -wal and -shm the same mode
        engine = create_engine(parsed, connect_args={"timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    if parsed.get_backend_name() == "postgresql":
        if parsed.drivername == "postgresql":
            parsed = parsed.set(drivername="postgresql+psycopg")
        # Sessions in UTC: psycopg then returns ``timestamptz`` values with the same
        # ``timezone.utc`` the store's types use (for "Etc/UTC", the server default on
        # Debian, it attaches a ZoneInfo that each read would have to swap). Options the
        # URL sets itself are left as they are.
        connect_args = {} if "options" in parsed.query else {"options": "-c timezone=UTC"}
        engine = create_engine(parsed, pool_pre_ping=True, connect_args=connect_args)
        event.listen(engine, "connect", _postgresql_session)
        return engine
    raise ConfigError(
        f"unsupported database {parsed.get_backend_name()!r}: use sqlite:/// or postgresql://"
    )


def _postgresql_session(dbapi_connection: Any, _record: Any) -> None:
    # psycopg prepares a statement run 5 times, and PostgreSQL then plans it once for any
    # parameters: for ``deal_id IN (500 IDs)`` that generic plan scanned the whole ledger
    # (the first sync of 100k deals waited ~440 s on it). Plan each execution for its
    # own values.
    dbapi_connection.execute("SET plan_cache_mode TO force_custom_plan")
    dbapi_connection.commit()


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    # Reads: a 64 MiB page cache (the default is 2 MiB) and temporary b-trees in memory.
    cursor.execute("PRAGMA cache_size=-65536")
    cursor.execute("PRAGMA temp_store=MEMORY")
    # Checkpoint the WAL every ~40 MiB instead of 4 MiB: a page that bulk writes touch
    # again and again is copied into the database once per checkpoint, not once per 4 MiB
    # (first sync of 100k deals: ~9 CPU-s less). No mmap: mapped pages would count as
    # the process's memory.
    cursor.execute("PRAGMA wal_autocheckpoint=10000")
    cursor.close()


def alembic_config(engine: Engine) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["engine"] = engine
    return config


def upgrade(engine: Engine) -> None:
    """Apply every pending migration, all or nothing: on SQLite too, where the driver
    leaves DDL outside any transaction unless told otherwise, a process killed mid-way
    leaves the store as it was."""
    from alembic import command

    migrating = _transactional(engine)
    try:
        command.upgrade(alembic_config(migrating), "head")
    finally:
        if migrating is not engine:
            migrating.dispose()


def _transactional(engine: Engine) -> Engine:
    """For a SQLite file, an engine on it whose transactions are real ones (``BEGIN
    IMMEDIATE`` is issued, DDL included: SQLAlchemy's documented recipe for pysqlite, with
    the write lock taken at the start); else ``engine``."""
    if engine.dialect.name != "sqlite" or engine.url.database in (None, "", ":memory:"):
        return engine
    migrating = create_engine(engine.url, connect_args={"timeout": 30})

    @event.listens_for(migrating, "connect")
    def _connect(dbapi_connection: Any, record: Any) -> None:
        _sqlite_pragmas(dbapi_connection, record)
        dbapi_connection.isolation_level = None  # the driver issues no BEGIN of its own

    @event.listens_for(migrating, "begin")
    def _begin(connection: Any) -> None:  # the write lock first: one process migrates
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return migrating


def revisions(engine: Engine) -> tuple[str | None, list[tuple[str, str]]]:
    """The store's current revision and every migration (revision, title), oldest first."""
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(alembic_config(engine))
    history = [(r.revision, (r.doc or "").strip()) for r in reversed(list(script.walk_revisions()))]
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision(), history


def upgrade_sql(engine: Engine) -> str:
    """The SQL that would bring the store to the newest schema, applied nowhere."""
    import io

    from alembic import command

    current, _ = revisions(engine)
    buffer = io.StringIO()
    config = alembic_config(engine)
    config.output_buffer = buffer
    command.upgrade(config, f"{current}:head" if current else "head", sql=True)
    return buffer.getvalue()


# The newest migration (a test holds it to alembic's head): checking a store against it
# needs no alembic import, the larger part of a no-op run's start-up.
SCHEMA_HEAD = "0013"


def needs_upgrade(engine: Engine) -> bool:
    with engine.connect() as connection:
        if not inspect(connection).has_table("alembic_version"):
            return True
        current = connection.execute(text("SELECT version_num FROM alembic_version"))
        return list(current.scalars()) != [SCHEMA_HEAD]


def store_missing(url: str) -> bool:
    """Whether ``url`` is a SQLite file that does not exist yet (opening would create it)."""
    try:
        parsed = make_url(url)
    except ArgumentError:  # open_store says what is wrong with it
        return False
    database = parsed.database or ""
    return (
        parsed.get_backend_name() == "sqlite"
        and database not in ("", ":memory:")
        and not database.startswith("file:")
        and not Path(database).exists()
    )


def open_store(url: str, migrate: bool = True) -> Engine:
    """Engine for ``url`` with the schema at the newest migration; with ``migrate`` off,
    a store behind the newest schema is a ``PermanentError`` instead of being migrated."""
    engine = create_store_engine(url)
    where = engine.url.render_as_string(hide_password=True)
    try:
        pending = needs_upgrade(engine)
    except OperationalError as exc:
        engine.dispose()
        reason = type(exc.orig).__name__
        raise TransientError(f"cannot reach the store at {where}: {reason}") from None
    if pending and not migrate:
        engine.dispose()
        raise PermanentError(
            f"the store at {where} is behind revsync's schema; run `revsync db upgrade` "
            "(migrations are not applied automatically here)"
        )
    if pending:
        try:
            upgrade(engine)
        except OperationalError as exc:
            engine.dispose()
            detail = str(exc.orig).splitlines()[0][:200]
            raise PermanentError(
                f"the store at {where} is reachable but its schema is not one revsync can "
                f"migrate ({type(exc.orig).__name__}: {detail}); its alembic_version table "
                "names the migration it is at"
            ) from None
    return engine
