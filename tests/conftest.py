"""Shared fixtures: a fresh store on every backend the suite runs against; TLS files.

PostgreSQL runs wherever ``REVSYNC_TEST_POSTGRES_URL`` points (default: the local server
on 127.0.0.1:5432). It is never skipped: an unreachable server fails the tests that need it.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy import Engine

from revsync.store.engine import open_store
from revsync.store.schema import metadata
from tests.emulators.tls import TlsFiles, make_tls_files

POSTGRES_ADMIN_URL = os.environ.get(
    "REVSYNC_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """A CA and a localhost certificate for the emulators that speak TLS (gRPC, HTTPS)."""
    return make_tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A throwaway database on the PostgreSQL server, dropped after the session."""
    name = f"revsync_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = sa.engine.make_url(POSTGRES_ADMIN_URL).set(database=name)
    yield url.render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The URL of an empty, migrated store: SQLite file or the PostgreSQL test database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path_factory.mktemp('store') / 'revsync.db'}"
    url: str = request.getfixturevalue("postgres_url")
    engine = open_store(url)
    with engine.begin() as conn:
        tables = ", ".join(f'"{t.name}"' for t in metadata.sorted_tables)
        conn.execute(sa.text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    engine.dispose()
    return url


@pytest.fixture
def engine(store_url: str) -> Iterator[Engine]:
    engine = open_store(store_url)
    yield engine
    engine.dispose()


@pytest.fixture(autouse=True)
def _forget_rotated_refresh_tokens() -> Iterator[None]:
    """A rotated Salesforce refresh token is kept in the process for the next run; each
    test's emulator is a new org (possibly on an earlier test's port), so none carries
    over from one test to another."""
    from revsync.sources import refresh_tokens

    refresh_tokens._NEWEST.clear()
    yield
    refresh_tokens._NEWEST.clear()
