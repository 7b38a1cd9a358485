"""SQLAlchemy Core tables of the store. Alembic migrations mirror this file."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    TypeDecorator,
)
from sqlalchemy.engine import Dialect

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class UtcDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC in, timezone-aware UTC out, on SQLite and PostgreSQL alike."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; use timezone-aware UTC")
        return (
            value.astimezone(UTC)
            if dialect.name != "sqlite"
            else value.astimezone(UTC).replace(tzinfo=None)
        )

    def bind_processor(self, dialect: Dialect) -> Callable[[Any], Any] | None:
        """On SQLite, the text SQLAlchemy's ``DATETIME`` would store, in one step (an
        import binds several times per row)."""
        if dialect.name != "sqlite":
            return super().bind_processor(dialect)

        def process(value: datetime | None) -> str | None:
            if value is None:
                return None
            if value.tzinfo is None:
                raise ValueError("naive datetime given to the store; use timezone-aware UTC")
            return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")

        return process

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


TS = UtcDateTime()
MONEY = Numeric(18, 4)
HASH = String(64)

visitors = Table(
    "visitors",
    metadata,
    Column("id", String(128), primary_key=True),
    Column("first_seen", TS, nullable=False),
    Column("last_seen", TS, nullable=False),
    Column("ga_client_id", String(64)),
    Column("fbp", String(128)),
)

touchpoints = Table(
    "touchpoints",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("visitor_id", String(128), ForeignKey("visitors.id"), nullable=False),
    Column("occurred_at", TS, nullable=False),
    Column("channel", String(40), nullable=False),
    Column("source", String(255)),
    Column("medium", String(255)),
    Column("campaign", String(255)),
    Column("term", String(255)),
    Column("content", String(255)),
    Column("landing_url", Text),
    Column("referrer", Text),
    Column("gclid", String(255)),
    Column("gbraid", String(255)),
    Column("wbraid", String(255)),
    Column("fbclid", String(255)),
    Column("fbc", String(300)),
    Column("fbp", String(128)),
    Column("ga_client_id", String(64)),
    Column("msclkid", String(255)),
    Column("ttclid", String(255)),
    Column("li_fat_id", String(255)),
    Column("consent_ad_user_data", Boolean),
    Column("consent_ad_personalization", Boolean),
    Column("user_agent", Text),
    Column("ip", String(64)),
    Index(None, "visitor_id", "occurred_at"),
    Index(None, "gclid"),
    Index(None, "gbraid"),
    Index(None, "wbraid"),
    Index(None, "fbclid"),
    Index(None, "ga_client_id"),
)

identities = Table(
    "identities",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("visitor_id", String(128), ForeignKey("visitors.id"), nullable=False),
    Column("observed_at", TS, nullable=False),
    Column("event", String(40), nullable=False),
    Column("email_sha256", HASH),
    Column("email_google_sha256", HASH),
    Column("phone_sha256", HASH),
    Column("phone_meta_sha256", HASH),
    Column("crm_id", String(64)),
    Column("email", String(320)),  # raw, only with collector.store_raw_pii
    Column("phone", String(64)),
    Index(None, "email_sha256"),
    Index(None, "phone_sha256"),
    Index(None, "crm_id"),
    Index(None, "visitor_id"),
)

deals = Table(
    "deals",
    metadata,
    Column("source", String(40), primary_key=True),
    Column("id", String(64), primary_key=True),
    Column("status", String(8), nullable=False),
    Column("amount", MONEY),
    Column("currency", String(3), nullable=False),
    Column("close_at", TS),
    Column("modified_at", TS, nullable=False),
    Column("stage", String(255)),
    Column("pipeline", String(255)),
    Column("owner", String(255)),
    Column("click_ids", JSON, nullable=False),
    Column("fields", JSON, nullable=False),
    Column("synced_at", TS, nullable=False),
    Column("account_id", String(64)),  # CRM account / company: customers for ARPC and CLTV
    Column("created_at", TS),  # when the CRM created the deal (pipeline report)
    Index(None, "status", "close_at"),
)

contacts = Table(
    "contacts",
    metadata,
    Column("source", String(40), primary_key=True),
    Column("crm_id", String(64), primary_key=True),
    Column("email_sha256", HASH),
    Column("email_google_sha256", HASH),
    Column("phone_sha256", HASH),
    Column("phone_meta_sha256", HASH),
    Column("click_ids", JSON, nullable=False),
    Column("email_ga4_sha256", HASH),
    Index(None, "email_sha256"),
    Index(None, "phone_sha256"),
)

deal_contacts = Table(
    "deal_contacts",
    metadata,
    Column("source", String(40), primary_key=True),
    Column("deal_id", String(64), primary_key=True),
    Column("contact_id", String(64), primary_key=True),
    Column("is_primary", Boolean, nullable=False),
)

match_links = Table(
    "match_links",
    metadata,
    Column("source", String(40), primary_key=True),
    Column("deal_id", String(64), primary_key=True),
    Column("visitor_id", String(128), primary_key=True),
    Column("key_type", String(20), primary_key=True),
    Column("key", String(255), nullable=False),
)

credits = Table(
    "credits",
    metadata,
    Column("source", String(40), primary_key=True),
    Column("deal_id", String(64), primary_key=True),
    Column("model", String(20), primary_key=True),
    Column("touchpoint_id", String(40), primary_key=True),
    Column("weight", String(64), nullable=False),  # exact Fraction "p/q"
    Column("amount", MONEY, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("channel", String(40), nullable=False),
)

conversions = Table(
    "conversions",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("destination", String(40), nullable=False),
    Column("platform", String(20), nullable=False),
    Column("kind", String(12), nullable=False),
    Column("source", String(40), nullable=False),
    Column("deal_id", String(64), nullable=False),
    Column("touchpoint_id", String(40)),
    Column("original_key", String(64)),
    Column("state", String(10), nullable=False),
    Column("value", MONEY, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("event_time", TS, nullable=False),
    Column("payload", Text, nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", TS),
    Column("error_code", String(80)),
    Column("error_message", Text),
    Column("run_id", Integer),
    Column("created_at", TS, nullable=False),
    Column("updated_at", TS, nullable=False),
    Column("request_id", String(128)),
    # Rows with the same group may share one request (GA4: same client, person, consent);
    # ``ledger.due`` hands them out together.
    Column("batch_group", String(32)),
    Index(None, "destination", "state", "next_attempt_at"),
    Index(None, "destination", "state", "batch_group", "created_at", "key"),  # ledger.due
    Index(None, "request_id"),
    Index(None, "source", "deal_id"),
)

sync_state = Table(
    "sync_state",
    metadata,
    Column("source", String(40), primary_key=True),
    Column("watermark", String(64)),
    Column("updated_at", TS, nullable=False),
)

runs = Table(
    "runs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("started_at", TS, nullable=False),
    Column("finished_at", TS),
    Column("status", String(16), nullable=False),
    Column("summary", JSON),
)

quarantine = Table(
    "quarantine",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", Integer, ForeignKey("runs.id")),
    Column("kind", String(20), nullable=False),
    Column("source", String(40), nullable=False),
    Column("record_id", String(255), nullable=False),
    Column("field", String(80), nullable=False),
    Column("reason", Text, nullable=False),
    Column("detail", JSON),
    Column("created_at", TS, nullable=False),
    Index(None, "run_id"),
)

leases = Table(
    "leases",
    metadata,
    Column("name", String(120), primary_key=True),  # "source:<name>", "destination:<name>"
    Column("owner", String(200), nullable=False),  # "run <id> on <host> (pid <pid>)"
    Column("expires_at", TS, nullable=False),
)

writebacks = Table(
    "writebacks",
    metadata,
    Column("source", String(40), primary_key=True),
    Column("crm_id", String(64), primary_key=True),
    Column("payload_hash", HASH, nullable=False),
    Column("pushed_at", TS, nullable=False),  # when last written, or last refused
    Column("error", Text),  # the CRM's refusal of this payload; retried after a day
)

credentials = Table(
    "credentials",
    metadata,
    Column("name", String(120), primary_key=True),  # "salesforce_refresh_token"
    Column("value", Text, nullable=False),  # Fernet token (REVSYNC_SECRET_KEY); never plain
    Column("origin", HASH, nullable=False),  # SHA-256 of the configured secret it replaced
    Column("updated_at", TS, nullable=False),
)

spend = Table(
    "spend",
    metadata,
    Column("platform", String(20), primary_key=True),  # google_ads, meta, bing, ...
    Column("account", String(64), primary_key=True),
    Column("day", Date, primary_key=True),  # the account's day, as the platform reports it
    Column("campaign", String(255), primary_key=True),
    # "" on campaign rows; a keyword row (Google Ads keyword_view) names both. Keyword rows
    # do not add up to their campaign's row (not all spend is on keywords): reports read
    # one level or the other, never both.
    Column("ad_group", String(255), primary_key=True, server_default=""),
    Column("keyword", String(255), primary_key=True, server_default=""),
    Column("campaign_id", String(64)),  # the platform's ID, where the reader knows it
    Column("cost", Numeric(20, 6), nullable=False),  # exact: Google reports micros
    Column("currency", String(3), nullable=False),
    Column("clicks", Integer),
    Column("impressions", Integer),
    Column("updated_at", TS, nullable=False),
    Index(None, "day"),
)

exchange_rates = Table(
    "exchange_rates",
    metadata,
    Column("day", Date, primary_key=True),
    Column("base", String(3), primary_key=True),  # 1 base = rate quote
    Column("quote", String(3), primary_key=True),
    Column("rate", Numeric(24, 10), nullable=False),
)

deal_stages = Table(
    "deal_stages",
    metadata,
    Column("source", String(40), primary_key=True),
    Column("deal_id", String(64), primary_key=True),
    Column("entered_at", TS, primary_key=True),
    Column("stage", String(255), primary_key=True),
    Column("origin", String(16), nullable=False),  # "sync" (seen changing) or "crm" (history)
)

gclid_clicks = Table(
    "gclid_clicks",
    metadata,
    Column("gclid", String(255), primary_key=True),
    Column("customer_id", String(20), nullable=False),
    Column("day", Date),
    Column("campaign_id", String(32)),  # all NULL: Google Ads does not know the click
    Column("campaign", String(255)),
    Column("ad_group_id", String(32)),
    Column("ad_group", String(255)),
    Column("keyword", String(255)),
    Column("match_type", String(20)),
    Column("resolved_at", TS, nullable=False),
)
