"""Credentials revsync keeps itself, encrypted: today the newest refresh token of a
Salesforce connected app that rotates them.

A row is ``(name, value, origin, updated_at)``: ``value`` is a Fernet token made with the
first key of ``REVSYNC_SECRET_KEY`` (any of its comma-separated keys decrypts, so a key can
be rotated), never the secret itself; ``origin`` is the SHA-256 of the configured secret
the stored one descends from. :meth:`CredentialVault.transaction` serialises the processes
that read, use and replace a credential (PostgreSQL: a transaction-level advisory lock per
name; SQLite: the database's write lock), so two runs never spend the same single-use
refresh token.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from pydantic import SecretStr
from sqlalchemy import Connection, Engine, delete, func, inspect, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError

from revsync.errors import ConfigError, PermanentError, TransientError
from revsync.store.schema import credentials

KEY_HELP = (
    "REVSYNC_SECRET_KEY must be one or more comma-separated Fernet keys (32 url-safe "
    'base64-encoded bytes); make one with `python -c "from cryptography.fernet import '
    'Fernet; print(Fernet.generate_key().decode())"`'
)


def fingerprint(secret: str) -> str:
    """SHA-256 hex of ``secret``: recognises a configured secret without keeping it."""
    return hashlib.sha256(secret.encode()).hexdigest()


def fernet(key: SecretStr) -> MultiFernet:
    """The key ring of ``REVSYNC_SECRET_KEY``; ConfigError when a key is malformed."""
    keys = [k.strip() for k in key.get_secret_value().split(",") if k.strip()]
    try:
        return MultiFernet([Fernet(k) for k in keys])
    except ValueError:  # also an empty list
        raise ConfigError(KEY_HELP) from None


@dataclass(frozen=True, slots=True)
class Stored:
    value: str
    origin: str
    updated_at: datetime


class CredentialVault:
    """Encrypted credentials in the ``credentials`` table of ``engine``."""

    def __init__(self, engine: Engine, key: SecretStr) -> None:
        self.engine = engine
        self._fernet = fernet(key)
        self._checked = False

    @contextmanager
    def transaction(self, name: str) -> Iterator[Connection]:
        """A transaction holding the lock on ``name`` (PostgreSQL) until it ends."""
        self._check_table()
        try:
            with self.engine.begin() as conn:
                if conn.dialect.name == "postgresql":
                    conn.execute(select(func.pg_advisory_xact_lock(_lock_id(name))))
                else:  # SQLite: a write first takes the database's write lock
                    conn.execute(
                        update(credentials)
                        .where(credentials.c.name == name)
                        .values(name=credentials.c.name)
                    )
                yield conn
        except SQLAlchemyError as exc:
            where = self.engine.url.render_as_string(hide_password=True)
            raise TransientError(
                f"the store at {where} failed while keeping the credential {name!r}: "
                f"{type(exc).__name__}"
            ) from None

    def read(self, conn: Connection, name: str) -> Stored | None:
        row = conn.execute(
            select(credentials.c.value, credentials.c.origin, credentials.c.updated_at).where(
                credentials.c.name == name
            )
        ).one_or_none()
        if row is None:
            return None
        try:
            value = self._fernet.decrypt(row.value.encode()).decode()
        except InvalidToken:
            raise ConfigError(
                f"the stored credential {name!r} does not decrypt with REVSYNC_SECRET_KEY: "
                "if the key was replaced, list the old one after the new one (comma-separated)"
            ) from None
        return Stored(value, row.origin, row.updated_at)

    def write(self, conn: Connection, name: str, value: str, origin: str, now: datetime) -> None:
        row = {
            "name": name,
            "value": self._fernet.encrypt(value.encode()).decode(),
            "origin": origin,
            "updated_at": now,
        }
        insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
        stmt = insert(credentials).values(row)
        conn.execute(
            stmt.on_conflict_do_update(
                index_elements=[credentials.c.name],
                set_={k: stmt.excluded[k] for k in ("value", "origin", "updated_at")},
            )
        )

    def delete(self, conn: Connection, name: str) -> None:
        conn.execute(delete(credentials).where(credentials.c.name == name))

    def _check_table(self) -> None:
        if self._checked:
            return
        try:
            present = inspect(self.engine).has_table(credentials.name)
        except SQLAlchemyError as exc:
            raise TransientError(f"cannot reach the store: {type(exc).__name__}") from None
        if not present:
            raise PermanentError("the store has no credentials table yet: run `revsync db upgrade`")
        self._checked = True


def _lock_id(name: str) -> int:
    """A signed 64-bit advisory lock key for ``name``."""
    digest = hashlib.sha256(f"revsync credentials {name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)
