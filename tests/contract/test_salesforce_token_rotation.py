"""Refresh-token rotation (issue #12): simple-salesforce over TLS against the emulator, the
newest refresh token kept in the store, encrypted, and spent by the next run."""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import requests
import sqlalchemy as sa
from cryptography.fernet import Fernet
from pydantic import SecretStr
from sqlalchemy import Engine

from revsync.config.mapping import SalesforceSource
from revsync.config.settings import Settings
from revsync.errors import ConfigError, PermanentError
from revsync.sources import refresh_tokens
from revsync.sources.salesforce import SalesforceDealSource
from revsync.store.schema import credentials
from tests.emulators.salesforce import ConnectedApp, SalesforceEmulator
from tests.emulators.tls import TlsFiles

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
CONFIGURED = "5Aep861-configured-refresh-token"
KEY = Fernet.generate_key().decode()
REFUSED = {"error": "invalid_grant", "error_description": "expired access/refresh token"}


class Org:
    def __init__(self, emu: SalesforceEmulator, app: ConnectedApp, tls: TlsFiles) -> None:
        self.emu, self.app, self.tls = emu, app, tls

    @property
    def token_url(self) -> str:
        return f"{self.emu.base_url}/services/oauth2/token"

    def source(
        self, engine: Engine | None, token: str = CONFIGURED, key: str | None = KEY, **more: Any
    ) -> SalesforceDealSource:
        """A source as a fresh process builds it: nothing known but settings and store."""
        refresh_tokens._NEWEST.clear()
        settings = Settings(
            salesforce_client_id="cid", salesforce_client_secret=SecretStr("shh"),
            salesforce_refresh_token=SecretStr(token),
            secret_key=SecretStr(key) if key else None, **more,
        )  # fmt: skip
        block = SalesforceSource.model_validate({
            "type": "salesforce", "name": "sf", "instance_url": self.emu.base_url,
            "token_url": self.token_url, "ca_bundle": str(self.tls.ca_cert), "currency": "USD",
        })  # fmt: skip
        return SalesforceDealSource(block, settings, "US", engine)

    def run(self, src: SalesforceDealSource) -> list[str]:
        try:
            return [d.id for page in src.pages(None, T0) for d in page.deals]
        finally:
            src.close()

    def spent(self) -> list[str]:
        """The refresh token of each refresh grant, in order."""
        return [
            r.body.decode().split("refresh_token=")[-1].split("&")[0]
            for r in self.emu.requests
            if r.path.endswith("/oauth2/token")
        ]

    def post(self, **form: str) -> requests.Response:
        with requests.Session() as session:
            session.trust_env, session.verify = False, str(self.tls.ca_cert)
            return session.post(self.token_url, data=form)

    def refresh(self, token: str) -> requests.Response:
        return self.post(grant_type="refresh_token", client_id="cid", refresh_token=token)


@pytest.fixture
def org(tls: TlsFiles) -> Iterator[Org]:
    emu = SalesforceEmulator(tls)  # rotation on: the default
    emu.set_clock(T0)
    emu.start()
    app = emu.add_connected_app("cid", client_secret="shh", refresh_token=CONFIGURED)
    emu.add("Opportunity", Amount=100.0, StageName="Closed Won", CloseDate="2026-02-27")
    yield Org(emu, app, tls)
    emu.stop()
    refresh_tokens._NEWEST.clear()


def only_token(app: ConnectedApp) -> str:
    [token] = app.refresh_tokens
    return token


def stored(engine: Engine) -> tuple[str, str]:
    with engine.connect() as conn:
        row = conn.execute(sa.select(credentials.c.value, credentials.c.origin)).one()
    return row.value, row.origin


def decrypt(value: str, key: str = KEY) -> str:
    return Fernet(key.encode()).decrypt(value.encode()).decode()


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@pytest.mark.parametrize("rotate", [True, False])
def test_the_emulator_rotates_refresh_tokens_as_the_connected_app_setting_does(
    tls: TlsFiles, rotate: bool
) -> None:
    with SalesforceEmulator(tls, rotate_refresh_tokens=rotate) as emu:
        app = emu.add_connected_app("cid", refresh_token="rt-1")
        org = Org(emu, app, tls)
        first = org.refresh("rt-1")
        assert first.status_code == 200 and first.json()["access_token"]
        if not rotate:
            assert "refresh_token" not in first.json()
            assert org.refresh("rt-1").status_code == 200
            return
        rotated = first.json()["refresh_token"]
        assert rotated != "rt-1" and app.refresh_tokens == {rotated}
        again = org.refresh("rt-1")
        assert (again.status_code, again.json()) == (400, REFUSED)
        assert org.refresh(rotated).json()["refresh_token"] not in {rotated, "rt-1"}
        assert org.refresh(rotated).json() == REFUSED
        emu.revoke_refresh_tokens("cid")
        fresh = emu.authorize("cid")
        assert org.refresh(fresh).status_code == 200


def test_each_run_spends_the_newest_refresh_token_kept_encrypted_in_the_store(
    org: Org, engine: Engine, store_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    deals = org.run(org.source(engine))
    assert len(deals) == 1
    first = only_token(org.app)
    value, origin = stored(engine)
    assert first not in value and CONFIGURED not in value and origin == sha256(CONFIGURED)
    assert decrypt(value) == first

    # The second process: the configured token is spent, the stored one works.
    assert org.run(org.source(engine)) == deals
    second = only_token(org.app)
    assert org.spent() == [CONFIGURED, first]
    assert decrypt(stored(engine)[0]) == second

    # Without the engine passed in (doctor, or an unchanged factory): REVSYNC_DATABASE_URL.
    assert org.run(org.source(None, database_url=store_url)) == deals
    assert org.spent()[-1] == second

    # An expired session mid-run is renewed with the newest token, and that one is kept.
    src = org.source(engine)
    assert next(iter(src.check())).status == "pass"  # the credentials check
    org.emu.expire_sessions()
    assert org.run(src) == deals
    assert len(org.spent()) == 5 and len(set(org.spent())) == 5  # none was sent twice
    assert decrypt(stored(engine)[0]) == only_token(org.app)
    for secret in {CONFIGURED, KEY, *org.spent(), only_token(org.app)}:
        assert secret not in caplog.text
    for spent in (CONFIGURED, first, second):  # the emulator refuses every spent token
        response = org.refresh(spent)
        assert (response.status_code, response.json()) == (400, REFUSED)


def test_a_revoked_token_says_how_to_recover_and_a_newly_set_token_wins(
    org: Org, engine: Engine
) -> None:
    org.run(org.source(engine))
    kept = only_token(org.app)
    org.emu.revoke_refresh_tokens("cid")
    before = len(org.spent())
    with pytest.raises(PermanentError) as refused:
        org.run(org.source(engine))
    text = str(refused.value)
    assert "invalid_grant" in text and "Re-authorise" in text
    assert "set REVSYNC_SALESFORCE_REFRESH_TOKEN" in text and "replace" in text
    assert kept not in text and CONFIGURED not in text and "REVSYNC_SECRET_KEY" not in text
    assert org.spent()[before:] == [kept, CONFIGURED]  # the kept one, then the configured one

    # The operator re-authorises and sets the new token: it wins over the stale stored one.
    fresh = org.emu.authorize("cid")
    before = len(org.spent())
    assert org.run(org.source(engine, token=fresh))
    assert org.spent()[before:] == [fresh]
    assert stored(engine)[1] == sha256(fresh)
    # ... and from then on its rotations do, while the setting still holds it.
    rotated = only_token(org.app)
    assert org.run(org.source(engine, token=fresh))
    assert org.spent()[-1] == rotated


def test_without_a_secret_key_the_token_survives_only_in_the_process(
    org: Org, caplog: pytest.LogCaptureFixture
) -> None:
    src = org.source(None, key=None)
    assert org.run(src)
    warning = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("REVSYNC_SECRET_KEY" in w for w in warning), warning
    settings = Settings(
        salesforce_client_id="cid", salesforce_client_secret=SecretStr("shh"),
        salesforce_refresh_token=SecretStr(CONFIGURED),
    )  # fmt: skip
    again = SalesforceDealSource(src.config, settings, "US")  # same process, another source
    assert org.run(again)
    assert org.spent()[-1] != CONFIGURED
    with pytest.raises(PermanentError, match="REVSYNC_SECRET_KEY") as refused:
        org.run(org.source(None, key=None))  # the next process
    for secret in {CONFIGURED, *org.spent(), only_token(org.app)}:
        assert secret not in caplog.text and secret not in str(refused.value)


def test_the_secret_key_decrypts_or_says_what_is_wrong(org: Org, engine: Engine) -> None:
    org.run(org.source(engine))
    other = Fernet.generate_key().decode()
    with pytest.raises(ConfigError, match="REVSYNC_SECRET_KEY"):
        org.run(org.source(engine, key=other))
    assert org.run(org.source(engine, key=f"{other},{KEY}"))  # a new key first, the old after
    assert decrypt(stored(engine)[0], other) == only_token(org.app)  # now under the new key
    with pytest.raises(ConfigError, match="Fernet") as malformed:
        org.source(engine, key="not-a-key")
    assert "not-a-key" not in str(malformed.value)


def test_concurrent_runs_spend_the_chain_one_after_the_other(org: Org, engine: Engine) -> None:
    org.run(org.source(engine))
    sources = [org.source(engine) for _ in range(4)]
    start = threading.Barrier(len(sources))
    errors: list[BaseException] = []

    def run(src: SalesforceDealSource) -> None:
        start.wait()
        try:
            org.run(src)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(s,)) for s in sources]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(org.spent()) == 5 and len(set(org.spent())) == 5
