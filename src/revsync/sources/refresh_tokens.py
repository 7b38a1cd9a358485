"""Refresh tokens that rotate.

With refresh-token rotation on (a Salesforce connected app or external client app OAuth
setting), each refresh grant answers with a new refresh token and invalidates the one it
was given, so the token in ``REVSYNC_SALESFORCE_REFRESH_TOKEN`` works exactly once. A
:class:`RefreshTokenChain` keeps the newest token and spends that one next time:

- With ``REVSYNC_SECRET_KEY`` set, in the store's ``credentials`` table, encrypted
  (:mod:`revsync.store.credentials`), next to the fingerprint of the configured token the
  chain started from. Each grant runs in one store transaction that holds the chain's lock,
  so concurrent runs spend the tokens one after the other.
- Without it, only in this process (for the other sources and the next runs of a worker),
  and a warning says that the next process will be refused.

A configured token whose fingerprint differs from the stored one's origin is a fresh
authorisation: it wins, and its rotations replace the stored token. When the newest token
is refused with ``invalid_grant``, the configured one is tried once more before giving up
with an error that says how to re-authorise. No token is ever logged or put in an error.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pydantic import SecretStr
from sqlalchemy import Connection, Engine

from revsync.errors import PermanentError
from revsync.sources.oauth import GrantRefused
from revsync.store.credentials import CredentialVault, fingerprint

if TYPE_CHECKING:
    from revsync.config.mapping import SalesforceSource
    from revsync.config.settings import Settings

log = logging.getLogger(__name__)
Exchange = Callable[[str], dict[str, Any]]  # refresh token -> the token endpoint's answer

# Without a vault: the newest token per (chain name, token URL, client id, origin).
_NEWEST: dict[tuple[str, str, str, str], str] = {}
_NEWEST_LOCK = threading.Lock()


class RefreshTokenChain:
    """The newest refresh token descending from ``configured`` (the value of the setting
    ``variable``); ``vault``: where it is kept across processes (``None``: this process)."""

    def __init__(
        self,
        name: str,
        variable: str,
        configured: str,
        vault: CredentialVault | None,
        memory_key: tuple[str, str],
        clock: Callable[[], datetime] | None = None,
        owned_engine: Engine | None = None,
    ) -> None:
        self.name = name
        self.variable = variable
        self._configured = configured
        self._origin = fingerprint(configured)
        self._vault = vault
        self._memory = (name, *memory_key, self._origin)
        self._clock = clock or (lambda: datetime.now(UTC))
        self._owned_engine = owned_engine
        self._warned = False

    def grant(self, exchange: Exchange) -> dict[str, Any]:
        """Run ``exchange`` with the newest token (then the configured one, if refused) and
        keep the refresh token the answer rotated to."""
        with self._transaction() as conn:
            newest = self._newest(conn)
            tries = [t for t in (newest, self._configured) if t is not None]
            tries = list(dict.fromkeys(tries))
            for n, token in enumerate(tries, 1):
                try:
                    answer = exchange(token)
                except GrantRefused as exc:
                    if exc.code != "invalid_grant":
                        raise
                    if n == len(tries):
                        raise self._refused(exc, stored=newest is not None) from None
                    continue
                self._keep(conn, token, answer.get("refresh_token"))
                return answer
        raise AssertionError("unreachable: the configured token is always tried")

    def close(self) -> None:
        if self._owned_engine is not None:
            self._owned_engine.dispose()

    # --- where the newest token lives ----------------------------------------------------

    @contextmanager
    def _transaction(self) -> Iterator[Connection | None]:
        if self._vault is None:
            yield None
            return
        with self._vault.transaction(self.name) as conn:
            yield conn

    def _newest(self, conn: Connection | None) -> str | None:
        """The newest token of this chain, when it descends from the configured one."""
        if self._vault is None or conn is None:
            with _NEWEST_LOCK:
                return _NEWEST.get(self._memory)
        stored = self._vault.read(conn, self.name)
        return stored.value if stored is not None and stored.origin == self._origin else None

    def _keep(self, conn: Connection | None, used: str, issued: object) -> None:
        rotated = issued if isinstance(issued, str) and issued and issued != used else None
        if self._vault is not None and conn is not None:
            if rotated:
                self._vault.write(conn, self.name, rotated, self._origin, self._clock())
                log.info("%s: the refresh token rotated; the new one is kept in the store",
                         self.name)  # fmt: skip
            elif used == self._configured:  # no rotation: a stored token is only stale
                self._vault.delete(conn, self.name)
            return
        with _NEWEST_LOCK:
            if rotated:
                _NEWEST[self._memory] = rotated
            elif used == self._configured:
                _NEWEST.pop(self._memory, None)
        if rotated and not self._warned:
            self._warned = True
            log.warning(
                "%s: the connected app rotates refresh tokens, so %s has now been spent; the "
                "new token is kept only in this process, and the next process will be "
                "refused. Set REVSYNC_SECRET_KEY so revsync keeps it in the store, encrypted.",
                self.name, self.variable,
            )  # fmt: skip

    def _refused(self, exc: GrantRefused, stored: bool) -> PermanentError:
        var = self.variable
        which = (
            f"neither the refresh token revsync kept (rotated from {var}) nor {var} is"
            if stored
            else f"{var} is not"
        )
        advice = (
            f"{exc}: {which} accepted (revoked, expired, or already spent by refresh-token "
            f"rotation). Re-authorise the connected app and set {var} to its new refresh "
            "token; revsync will then replace the one it keeps"
        )
        if self._vault is None:
            advice += (
                ". If the app rotates refresh tokens, also set REVSYNC_SECRET_KEY: without it "
                "a rotated token is kept only until the process ends"
            )
        return PermanentError(advice)


def refresh_token_chain(
    name: str,
    variable: str,
    configured: str,
    secret_key: SecretStr | None,
    engine: Engine | None,
    database_url: str,
    memory_key: tuple[str, str],
) -> RefreshTokenChain:
    """A chain kept in the store when ``secret_key`` is set: ``engine``'s, else an engine of
    its own on ``database_url`` (disposed by :meth:`RefreshTokenChain.close`)."""
    if secret_key is None or not secret_key.get_secret_value():
        return RefreshTokenChain(name, variable, configured, None, memory_key)
    owned = None
    if engine is None:
        from revsync.store.engine import create_store_engine

        engine = owned = create_store_engine(database_url)
    vault = CredentialVault(engine, secret_key)
    return RefreshTokenChain(name, variable, configured, vault, memory_key, owned_engine=owned)


def salesforce_chain(
    config: SalesforceSource, secrets: dict[str, str], settings: Settings, engine: Engine | None
) -> RefreshTokenChain | None:
    """The chain of a Salesforce source with ``auth: refresh_token`` (else ``None``)."""
    if config.auth != "refresh_token":
        return None
    variable = settings.variable("salesforce_refresh_token")  # named credentials: their own
    return refresh_token_chain(
        variable.removeprefix("REVSYNC_").lower(), variable,
        secrets["salesforce_refresh_token"], settings.secret_key, engine,
        settings.database_url, (config.token_url, secrets["salesforce_client_id"]),
    )  # fmt: skip
