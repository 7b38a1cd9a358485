"""The admins' mapping file (``revsync.yaml``): typed, described, unknown keys rejected.

Each source and destination block is chosen by its ``type:``. Every endpoint, token URL
and CA bundle is configurable (sandboxes, proxies, EU endpoints, local emulators).
"""

from __future__ import annotations

import re
from datetime import date
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from revsync.attribution.models import ModelName
from revsync.config import rules
from revsync.config.collector import CollectorConfig
from revsync.config.destinations import DestinationConfig
from revsync.config.reports import ReportsConfig
from revsync.config.rules import Block, Named

ATTRIBUTION_KEYS = tuple(
    f"{touch}_touch_{part}"
    for touch in ("first", "last")
    for part in ("channel", "source", "medium", "campaign", "click_id", "click_id_type", "at")
)
"""What ``attribution_fields`` can map: per touch its channel, utm source/medium/campaign,
click ID (gclid, gbraid, wbraid or fbclid), that click ID's kind, and its time (ISO 8601)."""
_SALESFORCE_FIELD = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,79}$")
_HUBSPOT_PROPERTY = re.compile(r"^[a-z][a-z0-9_]{0,99}$")


def _salesforce_attribution_fields() -> dict[str, str]:
    """``first_touch_click_id_type`` -> ``RevSync_First_Click_ID_Type__c`` and so on."""
    out = {}
    for key in ATTRIBUTION_KEYS:
        touch, _, part = key.partition("_touch_")
        name = {"click_id": "Click_ID", "click_id_type": "Click_ID_Type", "at": "Touch_At"}.get(
            part, part.title()
        )
        out[key] = f"RevSync_{touch.title()}_{name}__c"
    return out


def _attribution_fields(value: dict[str, str], pattern: re.Pattern[str]) -> dict[str, str]:
    unknown = sorted(set(value) - set(ATTRIBUTION_KEYS))
    if unknown:
        raise ValueError(f"unknown key(s) {', '.join(unknown)}; use {', '.join(ATTRIBUTION_KEYS)}")
    bad = sorted(name for name in value.values() if not pattern.match(name))
    if bad:
        raise ValueError(f"not a valid field name: {', '.join(bad)}")
    names = [name.lower() for name in value.values()]
    dupes = sorted({name for name in names if names.count(name) > 1})
    if dupes:
        raise ValueError(f"several keys write the same field: {', '.join(dupes)}")
    return value


# --- sources -------------------------------------------------------------------------


class SourceBase(Named):
    name: str = Field(description="Unique name of this source; keys its deals and watermark.")
    timezone: rules.TimeZoneName | None = Field(
        None,
        description="IANA time zone for dates without a time; default: the CRM account's own "
        "(HubSpot portal, Salesforce org), UTC for files.",
    )
    close_time: rules.ClockTime | None = Field(
        None,
        description='Local time ("HH:MM", quoted) at which a date-only close date is placed; '
        "default: the end of that day. Never later than the run's time.",
    )
    overlap_minutes: int = Field(
        10,
        ge=0,
        le=525_600,
        description="Re-read this much before the watermark (CRM clocks drift); max a year.",
    )
    max_amount: int = Field(
        1_000_000_000_000,
        gt=0,
        le=10**13,
        description="Largest believable deal amount; a won deal above it is quarantined.",
    )


class FileSource(SourceBase):
    """A CSV or JSONL export of deals, one row per deal and contact."""

    type: Literal["file"]
    path: rules.ExportPath = Field(description="CSV or JSONL export; relative to the mapping file.")
    won_stages: list[str] = Field(
        default_factory=list,
        description="Stages that mean won when the export has no `status` column.",
    )
    fields: list[str] = Field(
        default_factory=list,
        description="Extra export columns kept as deal fields (names match case-insensitively);"
        " other unknown columns are not stored.",
    )


class ApiSource(SourceBase):
    """A source read through a CRM's API, which retries transient failures."""

    max_attempts: int = Field(
        5,
        ge=1,
        description="Tries per call on 429, 5xx and connection errors (a read resumes).",
    )
    retry_initial_wait_seconds: float = Field(
        1.0, ge=0, le=3600, description="First backoff wait (doubles, jitter) without Retry-After."
    )
    retry_max_wait_seconds: float = Field(
        60.0, ge=0, le=3600, description="Longest wait between tries, Retry-After included."
    )
    reconcile_hours: int = Field(
        24,
        ge=0,
        le=8_760,
        description="Every this many hours, ask the CRM which won deals with uploads still "
        "exist (deleted past the recycle bin: treated as lost); 0: never.",
    )


_LOGIN_HOSTS = ("login.salesforce.com", "test.salesforce.com")


class SalesforceSource(ApiSource):
    """Salesforce Opportunities through the REST API (simple-salesforce)."""

    type: Literal["salesforce"]
    instance_url: rules.WebUrl = Field(description="https://yourorg.my.salesforce.com")
    token_url: rules.WebUrl = Field(
        "https://login.salesforce.com/services/oauth2/token",
        description="OAuth token endpoint (test.salesforce.com for sandboxes).",
    )
    auth: Literal["refresh_token", "jwt", "client_credentials"] = Field(
        "refresh_token", description="OAuth flow; credentials come from REVSYNC_SALESFORCE_*."
    )
    api_version: rules.SalesforceApiVersion = Field("59.0", description='REST API version, "59.0".')
    ca_bundle: rules.LocalPath | None = Field(
        None, description="CA bundle to trust instead of certifi."
    )
    won_field: str = Field("IsWon", description="Boolean Opportunity field that means won.")
    click_id_fields: dict[str, str] = Field(
        default_factory=dict,
        description="Click ID kind -> custom field, e.g. {gclid: GCLID__c}.",
    )
    bulk_threshold: int = Field(
        50_000, ge=1, description="Use Bulk API 2.0 when a backfill exceeds this many rows."
    )
    api_budget_share: float = Field(
        0.8, gt=0, le=1, description="Stop before using this share of the daily API budget."
    )
    push_attribution: bool = Field(
        False, description="Write first/last-touch data onto new contacts and leads."
    )
    stage_history: bool = Field(
        False, description="Read each page's OpportunityHistory for the pipeline report's "
        "stage history (one more API call per page).",
    )  # fmt: skip
    attribution_fields: dict[str, str] = Field(
        default_factory=_salesforce_attribution_fields,
        description="With push_attribution: what to write -> Contact/Lead field (custom "
        "fields on both objects), e.g. {first_touch_channel: RevSync_First_Channel__c}; "
        "replaces the defaults (RevSync_First_*/RevSync_Last_*__c). Keys: "
        + ", ".join(ATTRIBUTION_KEYS)
        + ".",
    )
    currency: str | None = Field(
        None,
        description="Org currency (ISO 4217) of a single-currency org; required there. "
        "Multi-currency orgs (Opportunity.CurrencyIsoCode exists) use each record's currency.",
    )
    jwt_audience: rules.WebUrl | None = Field(
        None,
        description="`aud` of JWT bearer assertions; default: https://login.salesforce.com "
        "(https://test.salesforce.com for a sandbox token URL), never the My Domain.",
    )
    page_size: int = Field(200, ge=1, le=2000, description="Deals per page (one transaction).")
    timeout_seconds: float = Field(60.0, gt=0, le=3600, description="Timeout of every API call.")
    bulk_poll_seconds: int = Field(
        5, ge=0, le=3600, description="Wait between Bulk API 2.0 job status polls."
    )
    fields: list[str] = Field(
        default_factory=list, description="Extra Opportunity fields kept on each deal."
    )
    pipeline_field: str | None = Field(
        None, description="Opportunity field used as the pipeline, e.g. RecordType.Name."
    )
    contact_click_id_fields: dict[str, str] = Field(
        default_factory=dict, description="Click ID kind -> Contact field, e.g. {gclid: GCLID__c}."
    )
    lead_click_id_fields: dict[str, str] = Field(
        default_factory=dict,
        description="Click ID kind -> Lead field, read from the lead each contact converted from.",
    )

    @field_validator("click_id_fields", "contact_click_id_fields", "lead_click_id_fields")
    @classmethod
    def _click_kinds(cls, value: dict[str, str]) -> dict[str, str]:
        from revsync.domain import ClickIds

        unknown = sorted(set(value) - set(ClickIds.__slots__))
        if unknown:
            raise ValueError(
                f"unknown click ID kind(s) {', '.join(unknown)}; "
                f"use {', '.join(ClickIds.__slots__)}"
            )
        return value

    @field_validator("attribution_fields")
    @classmethod
    def _attribution(cls, value: dict[str, str]) -> dict[str, str]:
        return _attribution_fields(value, _SALESFORCE_FIELD)

    @model_validator(mode="after")
    def _push_needs_fields(self) -> SalesforceSource:
        if self.push_attribution and not self.attribution_fields:
            raise ValueError("push_attribution needs at least one attribution_fields entry")
        return self

    @model_validator(mode="after")
    def _flow_and_hosts(self) -> SalesforceSource:
        from urllib.parse import urlsplit

        token_host = (urlsplit(self.token_url).hostname or "").lower()
        if self.auth == "client_credentials" and token_host in _LOGIN_HOSTS:
            raise ValueError(
                f"token_url: the client credentials flow works only on your My Domain, not "
                f"{token_host}; use https://<your domain>.my.salesforce.com/services/oauth2/token"
            )
        audience = (urlsplit(self.jwt_audience).hostname or "") if self.jwt_audience else ""
        if self.auth == "jwt" and audience.lower().endswith(".my.salesforce.com"):
            raise ValueError(
                f"jwt_audience: Salesforce expects https://login.salesforce.com (or "
                f"https://test.salesforce.com for a sandbox), not the My Domain {audience}"
            )
        return self

    @field_validator("currency")
    @classmethod
    def _currency(cls, value: str | None) -> str | None:
        from revsync.currencies import ISO_4217

        if value is not None and value.upper() not in ISO_4217:
            raise ValueError(f"{value!r} is not an ISO 4217 currency code")
        return value.upper() if value else None


class HubSpotSource(ApiSource):
    """HubSpot deals through CRM v3 search (hubspot-api-client)."""

    type: Literal["hubspot"]
    host: rules.WebUrl = Field("https://api.hubapi.com", description="API host.")
    won_property: str = Field(
        "hs_is_closed_won", description="Boolean deal property that means won."
    )
    won_stages: dict[str, list[str]] = Field(
        default_factory=dict,
        description="Pipeline -> stage ids that mean won; a pipeline not listed is won by "
        "won_property (doctor lists such pipelines).",
    )
    companies: bool = Field(
        False, description="Read each deal's primary company (one more call per page): "
        "the customer of report kpis' ARPC, CLTV and CAC.",
    )  # fmt: skip
    stage_history: bool = Field(
        False, description="Read each page's hs_v2_date_entered_<stage> properties for the "
        "pipeline report's stage history (one more call per 100 deals).",
    )  # fmt: skip
    push_attribution: bool = Field(
        False, description="Write first/last-touch data onto newly identified contacts."
    )
    attribution_fields: dict[str, str] = Field(
        default_factory=lambda: {key: f"revsync_{key}" for key in ATTRIBUTION_KEYS},
        description="With push_attribution: what to write -> contact property (create them "
        "first), e.g. {first_touch_channel: revsync_first_touch_channel}; replaces the "
        "defaults (revsync_<key>). Keys: " + ", ".join(ATTRIBUTION_KEYS) + ".",
    )
    default_currency: str | None = Field(
        None,
        description="ISO 4217 currency of deals without deal_currency_code; default: the "
        "portal's company currency (account details).",
    )
    deal_properties: list[str] = Field(
        default_factory=list, description="Extra deal properties kept as deal fields."
    )
    deal_click_id_properties: dict[str, str] = Field(
        default_factory=dict,
        description="Click ID kind -> deal property, e.g. {gclid: gclid}.",
    )
    contact_click_id_properties: dict[str, str] = Field(
        default_factory=lambda: {"gclid": "hs_google_click_id", "fbclid": "hs_facebook_click_id"},
        description="Click ID kind -> contact property (gclid, gbraid, wbraid, fbclid).",
    )
    page_size: int = Field(200, ge=1, le=200, description="Deals per search request.")
    searches_per_second: float = Field(
        4.0, ge=0.01, description="Client-side limit on search requests (HubSpot allows ~5/s)."
    )
    timeout_seconds: float = Field(30.0, gt=0, le=3600, description="Timeout of every API call.")
    read_archived: bool = Field(
        True,
        description="List deleted (archived) deals each run so a deleted won deal counts as "
        "lost and its uploads get retracted: one request per 100 archived deals.",
    )

    @field_validator("default_currency")
    @classmethod
    def _currency(cls, value: str | None) -> str | None:
        from revsync.currencies import ISO_4217

        if value is None:
            return None
        if value.upper() not in ISO_4217:
            raise ValueError(f"{value!r} is not an ISO 4217 currency code")
        return value.upper()

    @field_validator("attribution_fields")
    @classmethod
    def _attribution(cls, value: dict[str, str]) -> dict[str, str]:
        return _attribution_fields(value, _HUBSPOT_PROPERTY)

    @model_validator(mode="after")
    def _push_needs_fields(self) -> HubSpotSource:
        if self.push_attribution and not self.attribution_fields:
            raise ValueError("push_attribution needs at least one attribution_fields entry")
        return self

    @field_validator("deal_click_id_properties", "contact_click_id_properties")
    @classmethod
    def _click_kinds(cls, value: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(value) - {"gclid", "gbraid", "wbraid", "fbclid", "ga_client_id"})
        if unknown:
            raise ValueError(
                f"unknown click ID kind(s) {', '.join(unknown)}; "
                "use gclid, gbraid, wbraid, fbclid or ga_client_id"
            )
        return value


SourceConfig = Annotated[FileSource | SalesforceSource | HubSpotSource, Field(discriminator="type")]


# --- matching, attribution, channels --------------------------------------------------


MatchKey = Literal["email", "phone", "crm_id", "click_id"]
_DEFAULT_KEYS: tuple[MatchKey, ...] = ("email", "phone", "crm_id", "click_id")


class MatchingConfig(Block):
    lookback_days: int = Field(
        90, ge=1, le=540, description="Journey window before the first lead event."
    )
    default_phone_region: rules.PhoneRegion | None = Field(
        None, description="ISO-3166 region for phone numbers without a country code, e.g. US."
    )
    keys: list[MatchKey] = Field(
        default_factory=lambda: list(_DEFAULT_KEYS),
        min_length=1,
        description="Which identifiers link a deal's contacts to visitors.",
    )


class AttributionConfig(Block):
    model: ModelName = Field("last_non_direct", description="Default model for destinations.")
    half_life_days: float = Field(7.0, gt=0, description="time_decay half-life in days.")
    first_share: float = Field(0.4, ge=0, le=1, description="position_based first-touch share.")
    last_share: float = Field(0.4, ge=0, le=1, description="position_based last-touch share.")

    @model_validator(mode="after")
    def _shares(self) -> AttributionConfig:
        if self.first_share + self.last_share > 1:
            raise ValueError("first_share + last_share must not exceed 1")
        return self


class ChannelRule(Block):
    channel: str = Field(description="Channel name to assign.")
    source: str | None = Field(None, description="Regex on utm_source (case-insensitive).")
    medium: str | None = Field(None, description="Regex on utm_medium (case-insensitive).")
    campaign: str | None = Field(None, description="Regex on utm_campaign (case-insensitive).")

    @model_validator(mode="after")
    def _has_pattern(self) -> ChannelRule:
        for pattern in (self.source, self.medium, self.campaign):
            if pattern is not None:
                try:
                    re.compile(pattern)
                except re.error as exc:
                    raise ValueError(f"bad regex {pattern!r}: {exc}") from None
        if not (self.source or self.medium or self.campaign):
            raise ValueError("give at least one of source, medium, campaign")
        return self


class PrivacyConfig(Block):
    keep_full_ip: bool = Field(False, description="Keep full IPs (default: truncated).")
    require_consent: bool = Field(
        True, description="Never upload a person who denied ad_user_data consent."
    )
    unknown_consent: Literal["deny", "grant"] = Field(
        "deny",
        description="A person with no consent signal at all (no visitor states one): deny "
        "(not uploaded) or grant (uploaded as consented; your legal basis).",
    )
    touchpoints_days: int | None = Field(
        None, ge=1, description="Delete touchpoints older than this, except credited ones "
        "(default: keep). At least matching.lookback_days.",
    )  # fmt: skip
    payloads_days: int | None = Field(
        None, ge=1, description="Strip the person from ledger payloads done this long ago, "
        "keeping the click IDs a retraction needs (default: keep).",
    )  # fmt: skip


class RevsyncConfig(Block):
    """Root of ``revsync.yaml``."""

    version: Literal[1] = Field(1, description="Mapping file format version.")
    sources: list[SourceConfig] = Field(description="CRM sources to read deals from.")
    destinations: list[DestinationConfig] = Field(
        default_factory=list, description="Where conversions go."
    )
    matching: MatchingConfig = Field(
        default_factory=MatchingConfig,  # type: ignore[arg-type]
        description="How a deal's contacts are linked to website visitors.",
    )
    attribution: AttributionConfig = Field(
        default_factory=AttributionConfig,  # type: ignore[arg-type]
        description="How revenue is split across a journey's touchpoints.",
    )
    channels: list[ChannelRule] = Field(
        default_factory=list, description="Rules applied before GA4's default channel group."
    )
    privacy: PrivacyConfig = Field(
        default_factory=PrivacyConfig,  # type: ignore[arg-type]
        description="IP truncation and consent enforcement.",
    )
    collector: CollectorConfig | None = Field(
        None, description="`revsync serve`: the website collector and its sites."
    )
    reports: ReportsConfig = Field(
        default_factory=ReportsConfig,  # type: ignore[arg-type]
        description="Reporting currency, exchange rates and time zone of the reports.",
    )
    start_date: date | None = Field(
        None,
        description="Deals closed before this date are never planned (a first backfill "
        "stops here); a destination's own `since` overrides it.",
    )

    @model_validator(mode="after")
    def _retention(self) -> RevsyncConfig:
        days = self.privacy.touchpoints_days
        if days is not None and days < self.matching.lookback_days:
            raise ValueError(
                f"privacy.touchpoints_days ({days}) is shorter than matching.lookback_days "
                f"({self.matching.lookback_days}): deals would lose their journeys"
            )
        return self

    @model_validator(mode="after")
    def _start_dates(self) -> RevsyncConfig:
        if self.start_date is not None:
            dated = [
                d if d.since is not None else d.model_copy(update={"since": self.start_date})
                for d in self.destinations
            ]
            object.__setattr__(self, "destinations", dated)  # the block is frozen
        return self

    @model_validator(mode="after")
    def _unique_names(self) -> RevsyncConfig:
        problems = rules.cross_block(
            [s.name for s in self.sources], [(d.name, d.sources) for d in self.destinations]
        )
        if problems:
            raise rules.LocatedValueError(problems)
        return self
