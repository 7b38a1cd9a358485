"""The destination blocks of ``revsync.yaml`` (``destinations:``): Google Ads, GA4 and
Meta, each chosen by its ``type:``."""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator

from revsync.attribution.models import ModelName
from revsync.config import rules
from revsync.config.rules import Named


class DestinationBase(Named):
    name: str = Field(description="Unique name; part of every idempotency key.")
    transport: str
    model: ModelName | None = Field(
        None, description="Attribution model for this destination; default: attribution.model."
    )
    value_mode: Literal["credited", "full"] = Field(
        "credited",
        description="credited: the model's credits on this platform's touchpoints (GA4: all); "
        "full: the deal amount.",
    )
    since: date | None = Field(
        None,
        description="Deals closed before this date are not planned here (default: start_date).",
    )
    output_dir: rules.LocalPath = Field(
        Path("out"), description="Where the file transport writes request bodies (JSONL)."
    )
    timeout_seconds: float = Field(30.0, gt=0, le=3600, description="Timeout of every API call.")
    batch_size: int | None = Field(
        None, ge=1, description="Rows per request; default and maximum: the platform limit."
    )
    sources: list[str] = Field(
        default_factory=list, description="Only deals of these sources (default: all)."
    )
    retry_budget_seconds: float = Field(
        300.0,
        ge=0,
        le=86_400,
        description="Seconds a run may spend on batches that end in retries (429 storms, "
        "5xx bursts) before the rest waits for the next run; 0: no limit.",
    )


class GoogleAdsDestination(DestinationBase):
    """Google Ads offline click conversions (Ads API or Data Manager API)."""

    type: Literal["google_ads"]
    transport: Literal["ads_api", "data_manager", "file"] = Field(
        "ads_api", description="ads_api | data_manager | file (request bodies to output_dir)."
    )
    customer_id: str = Field(description="Google Ads customer ID, digits only.")
    login_customer_id: str | None = Field(None, description="Manager account ID, if any.")
    conversion_action: str = Field(description="Conversion action ID for won deals.")
    conversion_actions_by_pipeline: dict[str, str] = Field(
        default_factory=dict, description="Pipeline -> conversion action ID overrides."
    )
    enhanced_conversions: bool = Field(
        False, description="Send hashed email/phone (enhanced conversions for leads)."
    )
    custom_variables: dict[str, str] = Field(
        default_factory=dict,
        description="Conversion custom variable ID -> deal attribute to send as its value: "
        "pipeline, stage, owner, or a CRM field kept on the deal.",
    )
    click_window_days: int = Field(90, ge=1, le=90, description="Click-through window.")
    account_timezone: rules.TimeZoneName = Field(
        "UTC", description="The Google Ads account's time zone."
    )
    endpoint: str = Field("googleads.googleapis.com", description="Google Ads API host[:port].")
    data_manager_endpoint: str = Field(
        "datamanager.googleapis.com", description="Data Manager API host[:port]."
    )
    token_uri: rules.WebUrl = Field(
        "https://oauth2.googleapis.com/token", description="OAuth 2 token endpoint."
    )
    ca_bundle: rules.LocalPath | None = Field(None, description="CA bundle to trust (TLS).")
    validate_only: bool = Field(False, description="Dry run: Google validates, stores nothing.")
    file_format: Literal["ads_api", "data_manager"] = Field(
        "ads_api",
        description="With transport: file, the body written: what ads_api "
        "(UploadClickConversionsRequest) or data_manager (IngestEventsRequest) would send.",
    )

    @field_validator("custom_variables")
    @classmethod
    def _variable_ids(cls, value: dict[str, str]) -> dict[str, str]:
        for variable in value:
            if not variable.isdigit():
                raise ValueError(f"custom variable {variable!r}: use its numeric ID")
        return value

    @field_validator("customer_id", "login_customer_id")
    @classmethod
    def _customer(cls, value: str | None) -> str | None:
        return None if value is None else rules.customer_id(value)

    @field_validator("conversion_action")
    @classmethod
    def _action(cls, value: str) -> str:
        return rules.conversion_action_id(value)


class Ga4Destination(DestinationBase):
    """GA4 events through the Measurement Protocol."""

    type: Literal["ga4"]
    transport: Literal["http", "file"] = Field("http", description="http | file")
    measurement_id: str = Field(description="Web stream measurement ID, G-XXXXXXX.")
    event_name: str = Field("close_convert_lead", description="close_convert_lead or purchase.")
    base_url: rules.WebUrl = Field(
        "https://www.google-analytics.com",
        description="MP host; https://region1.google-analytics.com for EU collection.",
    )
    validate_only: bool = Field(
        False, description="Send to /debug/mp/collect and report its validation messages."
    )

    @field_validator("measurement_id")
    @classmethod
    def _measurement_id(cls, value: str) -> str:
        if not re.match(r"^G-[A-Z0-9]+$", value):
            raise ValueError("a web stream measurement ID looks like G-XXXXXXXXXX")
        return value

    @field_validator("event_name")
    @classmethod
    def _event_name(cls, value: str) -> str:
        if not re.match(r"^[A-Za-z][A-Za-z0-9_]{0,39}$", value):
            raise ValueError("a letter, then letters, digits or '_' (max 40)")
        return value


class MetaDestination(DestinationBase):
    """Meta Conversions API server events."""

    type: Literal["meta"]
    transport: Literal["api", "file"] = Field("api", description="api | file")
    pixel_id: str = Field(description="Dataset (pixel) ID.")
    event_name: str = Field("Purchase", description="Purchase or a CRM stage name.")
    graph_url: rules.WebUrl = Field("https://graph.facebook.com", description="Graph API base URL.")
    api_version: rules.GraphApiVersion = Field("v26.0", description="Graph API version.")
    test_event_code: str | None = Field(None, description="Send to Test Events only.")
    data_processing_options: list[Literal["LDU"]] = Field(
        default_factory=list, description='Limited Data Use: ["LDU"]; empty for none.'
    )
    data_processing_country: int | None = Field(None, description="0 = geolocate; 1 = USA.")
    data_processing_state: int | None = Field(None, description="0 = geolocate; 1000 = CA.")
    ad_account_id: str | None = Field(
        None, description="Ad account ID (digits, without act_) to read spend from."
    )
    account_timezone: rules.TimeZoneName = Field(
        "UTC", description="The ad account's time zone (its reporting day)."
    )

    @field_validator("pixel_id")
    @classmethod
    def _pixel_id(cls, value: str) -> str:
        if not value.isdigit():
            raise ValueError("a pixel (dataset) ID is digits only")
        return value

    @field_validator("ad_account_id")
    @classmethod
    def _ad_account_id(cls, value: str | None) -> str | None:
        value = value.removeprefix("act_") if value else value
        if value is not None and not value.isdigit():
            raise ValueError("an ad account ID is digits only (act_ is optional)")
        return value


DestinationConfig = Annotated[
    GoogleAdsDestination | Ga4Destination | MetaDestination, Field(discriminator="type")
]


