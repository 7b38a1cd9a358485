"""The ``collector:`` block of ``revsync.yaml``: the sites ``revsync serve`` accepts
events from, and how it treats them (consent, cookies, privacy, limits, batching)."""

from __future__ import annotations

import re
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from revsync.config.rules import Block

_KEY = re.compile(r"^[A-Za-z0-9_-]{8,64}$")
_ENV = re.compile(r"^[A-Z][A-Z0-9_]{0,99}$")
_DOMAIN = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9-]{1,63})*$")
DEFAULT_BOTS = (
    r"bot\b|bot/|crawl|spider|slurp|headlesschrome|phantomjs|lighthouse|pingdom|"
    r"uptime|monitor|python-requests|curl/|wget|httpx|go-http-client|java/|okhttp|"
    r"facebookexternalhit|preview|scrapy"
)


class CollectorSite(Block):
    """One website that sends events."""

    key: str = Field(description="The site key the snippet sends (public; 8-64 of A-Za-z0-9_-).")
    origins: list[str] = Field(
        min_length=1,
        description="Page origins allowed to send events (CORS), e.g. https://www.example.com.",
    )
    consent: Literal["required", "optional"] = Field(
        "optional",
        description="required: no cookie and nothing sent or stored until the page grants "
        "analytics_storage; optional: sent unless the page denies it.",
    )
    forms: bool = Field(False, description="Capture email/phone from every form on submit.")
    cookie_domain: str | None = Field(
        None,
        description="When the collector is served under this domain (t.example.com for "
        "example.com), it sets the visitor cookie itself (2 years; survives Safari's 7-day "
        "cap on script cookies).",
    )
    leads_secret_env: str | None = Field(
        None,
        description="Environment variable holding this site's HMAC secret for POST /v1/leads "
        "(no variable: the endpoint refuses the site).",
    )

    @field_validator("key")
    @classmethod
    def _key(cls, value: str) -> str:
        if not _KEY.match(value):
            raise ValueError("use 8-64 letters, digits, '_' or '-'")
        return value

    @field_validator("origins")
    @classmethod
    def _origins(cls, value: list[str]) -> list[str]:
        out = []
        for origin in value:
            parts = urlsplit(origin)
            if parts.scheme not in ("http", "https") or not parts.netloc or parts.path.strip("/"):
                raise ValueError(f"{origin!r} is not an origin like https://www.example.com")
            out.append(f"{parts.scheme}://{parts.netloc.lower()}")
        return out

    @field_validator("cookie_domain")
    @classmethod
    def _domain(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip().lstrip(".").lower()
        if not _DOMAIN.match(value):
            raise ValueError(f"{value!r} is not a domain name like example.com")
        return value

    @field_validator("leads_secret_env")
    @classmethod
    def _env(cls, value: str | None) -> str | None:
        if value is not None and not _ENV.match(value):
            raise ValueError("give an environment variable name like REVSYNC_LEADS_SECRET")
        return value


class CollectorConfig(Block):
    """``revsync serve``: the website collector."""

    sites: list[CollectorSite] = Field(min_length=1, description="Websites that send events.")
    cookie_name: str = Field(
        "_rsid", pattern=r"^[A-Za-z0-9_]{1,32}$", description="The visitor cookie's name."
    )
    session_minutes: int = Field(30, ge=1, le=1440, description="Idle time that ends a session.")
    store_raw_pii: bool = Field(
        False, description="Also keep raw email/phone (default: only normalised hashes)."
    )
    bot_pattern: str = Field(
        DEFAULT_BOTS, description="User agents matching this regex (any case) are dropped."
    )
    trust_forwarded: bool = Field(
        False,
        description="Take the client IP from X-Forwarded-For (only behind your own proxy).",
    )
    max_body_bytes: int = Field(16_384, ge=512, le=1_048_576, description="Larger bodies: 413.")
    rate_per_minute: int = Field(
        600, ge=1, description="Requests per client IP per minute before 429."
    )
    flush_events: int = Field(500, ge=1, le=10_000, description="Write a batch at this size…")
    flush_ms: int = Field(
        5, ge=1, le=5_000, description="…or this many milliseconds after its first event."
    )
    lead_max_age_seconds: int = Field(
        300, ge=10, le=3600, description="Signed lead requests older than this are refused."
    )

    @field_validator("bot_pattern")
    @classmethod
    def _pattern(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"bad regex: {exc}") from None
        return value

    @model_validator(mode="after")
    def _unique_keys(self) -> CollectorConfig:
        keys = [site.key for site in self.sites]
        dupes = sorted({k for k in keys if keys.count(k) > 1})
        if dupes:
            raise ValueError(f"duplicate site key(s): {', '.join(dupes)}")
        return self

    def site(self, key: str) -> CollectorSite | None:
        return next((s for s in self.sites if s.key == key), None)
