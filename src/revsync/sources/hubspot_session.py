"""A HubSpot API session: the SDK client, retried calls, the portal's currency and zone.

Every call is retried on 429, 5xx and connection errors (honouring ``Retry-After``, bounded
attempts, jittered exponential backoff).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import urllib3
from hubspot import HubSpot
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt

from revsync.config.mapping import HubSpotSource
from revsync.config.settings import Settings
from revsync.currencies import ISO_4217
from revsync.errors import ConfigError, PermanentError, TransientError
from revsync.sources.base import backoff_seconds
from revsync.sources.hubspot_values import (
    API_ERRORS,
    Throttle,
    api_error,
    retry_after_seconds,
    retryable,
)

_T = TypeVar("_T")


class HubSpotSession:
    """One portal's API access; the deal source builds on it."""

    def __init__(
        self, config: HubSpotSource, settings: Settings, default_phone_region: str | None = None
    ) -> None:
        token = settings.hubspot_access_token
        if token is None or not token.get_secret_value().strip():
            raise ConfigError(
                f"source {config.name!r}: set {settings.variable('hubspot_access_token')} "
                "(a HubSpot private app access token)"
            )
        self.name = config.name
        self.config = config
        self.default_phone_region = default_phone_region
        client = HubSpot(
            access_token=token.get_secret_value().strip(),
            host=config.host.rstrip("/"),
            # revsync retries itself; urllib3 must not sleep on Retry-After behind its back
            retry=urllib3.Retry(total=0, respect_retry_after_header=False),
        )
        self._search_api = client.crm.deals.search_api
        self._deals_api = client.crm.deals.basic_api
        self._associations_api = client.crm.associations.v4.batch_api
        self._contacts_api = client.crm.contacts.batch_api
        self._deal_batch_api = client.crm.deals.batch_api
        self._throttle = Throttle(config.searches_per_second)
        self._details: dict[str, Any] | None = None

    def _get(self, path: str) -> Any:
        """A JSON GET through the SDK's client (auth, retries, timeout)."""
        client = self._search_api.api_client
        return self._call(
            f"GET {path}", client.call_api, path, "GET", auth_settings=["oauth2"],
            response_types_map={200: "object"}, _return_http_data_only=True,
            _request_timeout=self.config.timeout_seconds,
        )  # fmt: skip

    def _portal(self) -> dict[str, Any]:
        """The portal's account details (company currency, time zone), read once."""
        if self._details is None:
            self._details = dict(self._get("/account-info/v3/details"))
        return self._details

    def _default_currency(self) -> str:
        """The currency of deals without ``deal_currency_code``: the mapping's, else the
        portal's company currency."""
        configured = self.config.default_currency
        if configured is None:
            configured = str(self._portal().get("companyCurrency") or "").upper()
            if configured not in ISO_4217:
                raise PermanentError(
                    f"HubSpot source {self.name!r}: the portal's company currency "
                    f"{configured!r} is not an ISO 4217 code; set default_currency"
                )
        return configured

    def _timezone(self) -> str:
        """The zone of date-only close dates: the mapping's, else the portal's."""
        zone = self.config.timezone or str(self._portal().get("timeZone") or "")
        try:
            ZoneInfo(zone)
        except (ValueError, KeyError):
            raise PermanentError(
                f"HubSpot source {self.name!r}: the portal's time zone {zone!r} is unknown; "
                "set timezone"
            ) from None
        return zone

    def _call(self, what: str, fn: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        """``fn`` with retries on 429, 5xx and connection errors; errors become revsync's."""
        retrying = Retrying(
            stop=stop_after_attempt(self.config.max_attempts),
            wait=self._wait,
            retry=retry_if_exception(retryable),
            reraise=True,
        )
        try:
            return retrying(fn, *args, **kwargs)
        except urllib3.exceptions.HTTPError as exc:
            raise TransientError(f"HubSpot {what}: {type(exc).__name__}") from None
        except API_ERRORS as exc:
            raise api_error(what, exc) from None

    def _wait(self, state: RetryCallState) -> float:
        """Exponential backoff with jitter, at least ``Retry-After``, at most the cap."""
        retry_after = retry_after_seconds(state.outcome.exception()) if state.outcome else None
        return backoff_seconds(self.config, state.attempt_number, retry_after or 0.0)
