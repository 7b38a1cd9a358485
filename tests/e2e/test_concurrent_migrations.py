"""Processes that start together on a fresh store migrate it once: on PostgreSQL the
upgrade runs under an advisory lock, on SQLite in a transaction that takes the write lock
first; every other process waits, then finds the schema current."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

import revsync
from tests.conftest import POSTGRES_ADMIN_URL

SOURCE = str(Path(revsync.__file__).parents[1])
PROCESSES = 4
OPEN = "import sys; from revsync.store.engine import open_store; open_store(sys.argv[1])"


@pytest.fixture
def fresh_postgres() -> Iterator[str]:
    name = f"revsync_migrate_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    yield sa.engine.make_url(POSTGRES_ADMIN_URL).set(database=name).render_as_string(False)
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def open_together(url: str) -> list[tuple[int, str]]:
    env = {"PYTHONPATH": SOURCE, "PATH": "/usr/bin:/bin"}
    started = [
        subprocess.Popen([sys.executable, "-c", OPEN, url], env=env, stderr=subprocess.PIPE)
        for _ in range(PROCESSES)
    ]
    return [(p.wait(timeout=120), p.stderr.read().decode()[-400:]) for p in started if p.stderr]


def test_processes_starting_together_on_a_fresh_postgresql_store_migrate_it_once(
    fresh_postgres: str,
) -> None:
    results = open_together(fresh_postgres)
    assert [code for code, _ in results] == [0] * PROCESSES, results
    with sa.create_engine(fresh_postgres).connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM alembic_version")).scalar() == 1


def test_processes_starting_together_on_a_fresh_sqlite_store_migrate_it_once(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'revsync.db'}"
    results = open_together(url)
    assert [code for code, _ in results] == [0] * PROCESSES, results
