"""Build sources and destinations from the mapping and settings."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from revsync.config.mapping import (
    FileSource,
    RevsyncConfig,
    SalesforceSource,
)
from revsync.config.mapping import (
    Ga4Destination as Ga4Config,
)
from revsync.config.mapping import (
    GoogleAdsDestination as GoogleAdsConfig,
)
from revsync.config.mapping import (
    MetaDestination as MetaConfig,
)
from revsync.config.settings import Settings
from revsync.destinations.base import Destination, Transport
from revsync.destinations.files import FileTransport
from revsync.destinations.ga4 import Ga4Destination
from revsync.destinations.google_ads import GoogleAdsDestination
from revsync.destinations.meta import MetaDestination
from revsync.errors import ConfigError
from revsync.sources.base import DealSource
from revsync.sources.files import FileDealSource

Clock = Callable[[], datetime]


def build_sources(config: RevsyncConfig, settings: Settings) -> list[DealSource]:
    sources: list[DealSource] = []
    for block in config.sources:
        if isinstance(block, FileSource):
            sources.append(FileDealSource(block, config.matching.default_phone_region))
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
    for block in config.destinations:
        model = block.model or config.attribution.model
        transport = _transport(block, settings)
        if isinstance(block, GoogleAdsConfig):
            out.append(GoogleAdsDestination(block, model, transport, consent, clock))
        elif isinstance(block, Ga4Config):
            out.append(Ga4Destination(block, model, transport, consent, clock))
        else:
            out.append(MetaDestination(block, model, transport, consent, clock))
    return out


def _transport(block: GoogleAdsConfig | Ga4Config | MetaConfig, settings: Settings) -> Transport:
    if block.transport == "file":
        return FileTransport(block.output_dir, block.name, block.type)
    raise ConfigError(
        f"destination {block.name!r}: transport {block.transport!r} is not available in this "
        "build; use `transport: file`"
    )
