"""A Salesforce API session: OAuth grants, retried calls, the API budget, SOQL reads.

Sessions and outages: ``INVALID_SESSION_ID`` re-authenticates once and retries; a 5xx
answer or a lost connection is tried again with backoff up to ``max_attempts`` times.
Budget: usage from ``Sforce-Limit-Info`` at or above ``api_budget_share`` is over budget.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import requests
from pydantic import SecretStr
from requests import RequestException
from simple_salesforce.api import Salesforce
from simple_salesforce.exceptions import SalesforceExpiredSession, SalesforceGeneralError

from revsync.config.mapping import SalesforceSource
from revsync.config.settings import Settings
from revsync.errors import ConfigError
from revsync.sources import oauth
from revsync.sources.base import backoff_seconds
from revsync.sources.refresh_tokens import salesforce_chain
from revsync.sources.salesforce_values import flatten, translate

if TYPE_CHECKING:
    from sqlalchemy import Engine

T = TypeVar("T")
log = logging.getLogger(__name__)
IDS_PER_QUERY = 200
_REQUIRED = {
    "refresh_token": ("salesforce_client_id", "salesforce_refresh_token"),
    "jwt": ("salesforce_client_id", "salesforce_username", "salesforce_private_key"),
    "client_credentials": ("salesforce_client_id", "salesforce_client_secret"),
}


class SalesforceSession:
    """One org's authenticated API access; the deal source builds on it."""

    def __init__(
        self,
        config: SalesforceSource,
        settings: Settings,
        default_phone_region: str | None = None,
        engine: Engine | None = None,
    ) -> None:
        """``engine``: the store that keeps a rotated refresh token (see refresh_tokens)."""
        self.name = config.name
        self.config = config
        self.default_phone_region = default_phone_region
        self._secrets = _credentials(config, settings)
        self._refresh = salesforce_chain(config, self._secrets, settings, engine)
        self._http = oauth.http_session(config.ca_bundle, config.timeout_seconds)
        self._sf: Salesforce | None = None

    def close(self) -> None:
        self._http.close()
        if self._refresh is not None:
            self._refresh.close()

    def _authenticate(self) -> Salesforce:
        config, secrets = self.config, self._secrets
        if config.auth == "jwt":
            token = oauth.jwt_bearer_grant(
                self._http, config.token_url, secrets["salesforce_client_id"],
                secrets["salesforce_username"], secrets["salesforce_private_key"],
                config.jwt_audience,
            )  # fmt: skip
        elif config.auth == "client_credentials":
            token = oauth.client_credentials_grant(
                self._http, config.token_url, secrets["salesforce_client_id"],
                secrets["salesforce_client_secret"],
            )  # fmt: skip
        else:
            assert self._refresh is not None
            token = self._refresh.grant(
                lambda refresh_token: oauth.refresh_token_grant(
                    self._http, config.token_url, secrets["salesforce_client_id"],
                    secrets.get("salesforce_client_secret"), refresh_token,
                )
            )  # fmt: skip
        self._sf = Salesforce(
            instance_url=config.instance_url,
            session_id=token["access_token"],
            session=self._http,
            version=config.api_version,
        )
        return self._sf

    def _call(self, call: Callable[[Salesforce], T]) -> T:
        """Run one API call; an expired session is renewed once and the call retried, and
        a 5xx answer or a lost connection is tried again with backoff (``max_attempts``)."""
        renewed, failures = False, 0
        while True:
            sf = self._sf or self._authenticate()
            try:
                return call(sf)
            except (SalesforceExpiredSession, SalesforceGeneralError, RequestException) as exc:
                renewed, failures = self._recover(exc, renewed, failures)

    def _recover(self, exc: Exception, renewed: bool, failures: int) -> tuple[bool, int]:
        """After a failed call: an expired session is renewed once, a transient failure
        waited out (``_back_off``); anything else is raised. Returns the next try's
        (renewed, failures)."""
        if isinstance(exc, SalesforceExpiredSession):
            if renewed:
                raise exc
            self._authenticate()
            return True, failures
        self._back_off(exc, failures + 1)
        return renewed, failures + 1

    def _back_off(self, exc: Exception, failures: int) -> None:
        """Wait before try ``failures + 1`` after a transient ``exc``; re-raise ``exc`` when it
        is not transient or the tries are used up."""
        lost = isinstance(exc, requests.ConnectionError | requests.Timeout) and not isinstance(
            exc,
            requests.exceptions.SSLError,  # a certificate problem does not go away
        )
        transient = lost or (isinstance(exc, SalesforceGeneralError) and exc.status >= 500)
        if not transient or failures >= self.config.max_attempts:
            raise exc
        wait = backoff_seconds(self.config, failures)
        log.warning(
            "source %s: %s; try %d of %d in %.1fs",
            self.name, translate(exc), failures + 1, self.config.max_attempts, wait,
        )  # fmt: skip
        time.sleep(wait)

    def _over_budget(self) -> bool:
        usage = self._sf.api_usage.get("api-usage") if self._sf else None
        if usage is None or not usage.total:
            return False
        return bool(usage.used >= self.config.api_budget_share * usage.total)

    def _query_all(self, soql: str) -> list[dict[str, Any]]:
        """Every flattened record of ``soql``, deleted ones included; tried as ``_call``."""
        return self._call(
            lambda sf: [flatten(r) for r in sf.query_all_iter(soql, include_deleted=True)]
        )

    def _query_in(
        self, select: list[str], sobject: str, key: str, ids: list[str]
    ) -> list[dict[str, Any]]:
        rows = []
        for start in range(0, len(ids), IDS_PER_QUERY):
            quoted = ", ".join(f"'{i}'" for i in ids[start : start + IDS_PER_QUERY])
            soql = f"SELECT {', '.join(select)} FROM {sobject} WHERE {key} IN ({quoted})"  # noqa: S608

            def read(sf: Salesforce, soql: str = soql) -> list[dict[str, Any]]:
                return list(sf.query_all_iter(soql))

            rows += [flatten(r) for r in self._call(read)]
        return rows


def _credentials(config: SalesforceSource, settings: Settings) -> dict[str, str]:
    """The secrets the configured flow needs; ConfigError names every missing variable."""
    values: dict[str, str] = {}
    for name in (*_REQUIRED[config.auth], "salesforce_client_secret"):
        raw = getattr(settings, name)
        value = raw.get_secret_value() if isinstance(raw, SecretStr) else raw
        if value:
            values[name] = value
    missing = [settings.variable(n) for n in _REQUIRED[config.auth] if n not in values]
    if missing:
        problems = [f"source {config.name!r} (auth: {config.auth}) needs {m}" for m in missing]
        raise ConfigError("; ".join(problems), problems)
    return values
