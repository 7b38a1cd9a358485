"""Build sources and destinations from the mapping and settings."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from pydantic import SecretStr

from revsync.config.destinations import Ga4Destination as Ga4Config
from revsync.config.destinations import GoogleAdsDestination as GoogleAdsConfig
from revsync.config.destinations import MetaDestination as MetaConfig
from revsync.config.mapping import (
    FileSource,
    HubSpotSource,
    RevsyncConfig,
    SalesforceSource,
)
from revsync.config.settings import Settings, for_credentials
from revsync.destinations.base import Destination, Transport
from revsync.destinations.files import FileTransport
from revsync.destinations.ga4 import Ga4Destination
from revsync.destinations.google_ads import GoogleAdsDestination
from revsync.destinations.meta import MetaDestination
from revsync.errors import ConfigError
from revsync.sources.base import DealSource
from revsync.sources.files import FileDealSource

Clock = Callable[[], datetime]


def build_sources(config: RevsyncConfig, base: Settings) -> list[DealSource]:
    sources: list[DealSource] = []
    for block in config.sources:
        settings = for_credentials(base, block.credentials)
        if isinstance(block, FileSource):
            sources.append(FileDealSource(block, config.matching.default_phone_region))
        elif isinstance(block, HubSpotSource):
            from revsync.sources.hubspot import HubSpotDealSource

            sources.append(HubSpotDealSource(block, settings, config.matching.default_phone_region))
        elif isinstance(block, SalesforceSource):
            from revsync.sources.salesforce import SalesforceDealSource

            sources.append(
                SalesforceDealSource(block, settings, config.matching.default_phone_region)
            )
        else:
            raise ConfigError(
                f"source {block.name!r}: type {block.type!r} is not available in this build"
            )
    return sources


def build_destinations(
    config: RevsyncConfig, settings: Settings, clock: Clock | None = None
) -> list[Destination]:
    out: list[Destination] = []
    consent = config.privacy.require_consent
    grant_unknown = config.privacy.unknown_consent == "grant"
    for block in config.destinations:
        model = block.model or config.attribution.model
        transport = _transport(block, for_credentials(settings, block.credentials))
        kind = (
            GoogleAdsDestination if isinstance(block, GoogleAdsConfig)
            else Ga4Destination if isinstance(block, Ga4Config)
            else MetaDestination
        )  # fmt: skip
        out.append(kind(block, model, transport, consent, clock, grant_unknown))  # type: ignore[arg-type]
    return out


def _transport(block: GoogleAdsConfig | Ga4Config | MetaConfig, settings: Settings) -> Transport:
    if block.transport == "file":
        if isinstance(block, GoogleAdsConfig) and block.file_format == "data_manager":
            from revsync.destinations.data_manager import DataManagerFileTransport

            return DataManagerFileTransport(block)  # the IngestEvents bodies, not the Ads API's
        return FileTransport(block.output_dir, block.name, block.type)
    # Imported here: each SDK is loaded only when a destination uses it.
    if isinstance(block, Ga4Config) and block.transport == "http":
        from revsync.destinations.ga4_http import Ga4HttpTransport

        secret = _secret(settings, "ga4_api_secret", block.name, "the stream's MP api secret")
        return Ga4HttpTransport(block, secret)
    if isinstance(block, MetaConfig) and block.transport == "api":
        from revsync.destinations.meta_api import MetaApiTransport

        token = _secret(settings, "meta_access_token", block.name, "a Conversions API token")
        return MetaApiTransport(block, token)
    if isinstance(block, GoogleAdsConfig):
        return google_transport(block, settings)  # imports google-ads
    raise ConfigError(
        f"destination {block.name!r}: transport {block.transport!r} is not available in this "
        "build; use `transport: file`"
    )


def _secret(settings: Settings, field: str, destination: str, what: str) -> SecretStr:
    """A credential from the settings; missing, a ConfigError naming where to put it."""
    value = getattr(settings, field)
    if value is None:
        variable = settings.variable(field)
        raise ConfigError(
            f"destination {destination!r}: set {variable} (or the {variable.lower()} file in "
            f"REVSYNC_SECRETS_DIR) to {what}"
        )
    assert isinstance(value, SecretStr)
    return value


def google_transport(config: GoogleAdsConfig, settings: Settings) -> Transport:
    """The transport that ``config.transport`` names, with credentials from ``settings``."""
    fields = ["google_oauth_client_id", "google_oauth_client_secret", "google_oauth_refresh_token"]
    if config.transport == "ads_api":
        fields.append("google_ads_developer_token")
    values = {name: _plain(getattr(settings, name)) for name in fields}
    missing = [settings.variable(name) for name in fields if not values[name]]
    if missing:
        raise ConfigError(
            f"destination {config.name!r} (transport: {config.transport}) needs "
            + ", ".join(missing),
            [f"destination {config.name!r}: set {env}" for env in missing],
        )
    from revsync.destinations.google_ads_api import GoogleAdsApiTransport, GoogleOAuth

    oauth = GoogleOAuth(
        values["google_oauth_client_id"],
        values["google_oauth_client_secret"],
        values["google_oauth_refresh_token"],
    )
    if config.transport == "data_manager":
        from revsync.destinations.data_manager import DataManagerTransport

        return DataManagerTransport(config, oauth)
    return GoogleAdsApiTransport(config, values["google_ads_developer_token"], oauth)


def _plain(value: object) -> str:
    secret = getattr(value, "get_secret_value", None)
    return str(secret() if secret else value or "")
