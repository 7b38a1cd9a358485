"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-24 23:21:38.386154
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table(
        "contacts",
        sa.Column("source", sa.String(length=40), nullable=False),
        sa.Column("crm_id", sa.String(length=64), nullable=False),
        sa.Column("email_sha256", sa.String(length=64), nullable=True),
        sa.Column("email_google_sha256", sa.String(length=64), nullable=True),
        sa.Column("phone_sha256", sa.String(length=64), nullable=True),
        sa.Column("phone_meta_sha256", sa.String(length=64), nullable=True),
        sa.Column("click_ids", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("source", "crm_id", name=op.f("pk_contacts")),
    )
    with op.batch_alter_table("contacts", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_contacts_email_sha256"), ["email_sha256"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_contacts_phone_sha256"), ["phone_sha256"], unique=False
        )

    op.create_table(
        "conversions",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("destination", sa.String(length=40), nullable=False),
        sa.Column("platform", sa.String(length=20), nullable=False),
        sa.Column("kind", sa.String(length=12), nullable=False),
        sa.Column("source", sa.String(length=40), nullable=False),
        sa.Column("deal_id", sa.String(length=64), nullable=False),
        sa.Column("touchpoint_id", sa.String(length=40), nullable=True),
        sa.Column("original_key", sa.String(length=64), nullable=True),
        sa.Column("state", sa.String(length=10), nullable=False),
        sa.Column("value", sa.Numeric(precision=18, scale=4), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("event_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("error_code", sa.String(length=80), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("run_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_conversions")),
    )
    with op.batch_alter_table("conversions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_conversions_destination_state_next_attempt_at"),
            ["destination", "state", "next_attempt_at"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_conversions_source_deal_id"), ["source", "deal_id"], unique=False
        )

    op.create_table(
        "credits",
        sa.Column("source", sa.String(length=40), nullable=False),
        sa.Column("deal_id", sa.String(length=64), nullable=False),
        sa.Column("model", sa.String(length=20), nullable=False),
        sa.Column("touchpoint_id", sa.String(length=40), nullable=False),
        sa.Column("weight", sa.String(length=64), nullable=False),
        sa.Column("amount", sa.Numeric(precision=18, scale=4), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("channel", sa.String(length=40), nullable=False),
        sa.PrimaryKeyConstraint(
            "source", "deal_id", "model", "touchpoint_id", name=op.f("pk_credits")
        ),
    )
    op.create_table(
        "deal_contacts",
        sa.Column("source", sa.String(length=40), nullable=False),
        sa.Column("deal_id", sa.String(length=64), nullable=False),
        sa.Column("contact_id", sa.String(length=64), nullable=False),
        sa.Column("is_primary", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("source", "deal_id", "contact_id", name=op.f("pk_deal_contacts")),
    )
    op.create_table(
        "deals",
        sa.Column("source", sa.String(length=40), nullable=False),
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=8), nullable=False),
        sa.Column("amount", sa.Numeric(precision=18, scale=4), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("close_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("modified_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("stage", sa.String(length=255), nullable=True),
        sa.Column("pipeline", sa.String(length=255), nullable=True),
        sa.Column("owner", sa.String(length=255), nullable=True),
        sa.Column("click_ids", sa.JSON(), nullable=False),
        sa.Column("fields", sa.JSON(), nullable=False),
        sa.Column("synced_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("source", "id", name=op.f("pk_deals")),
    )
    with op.batch_alter_table("deals", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_deals_status_close_at"), ["status", "close_at"], unique=False
        )

    op.create_table(
        "match_links",
        sa.Column("source", sa.String(length=40), nullable=False),
        sa.Column("deal_id", sa.String(length=64), nullable=False),
        sa.Column("visitor_id", sa.String(length=128), nullable=False),
        sa.Column("key_type", sa.String(length=20), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.PrimaryKeyConstraint(
            "source", "deal_id", "visitor_id", "key_type", name=op.f("pk_match_links")
        ),
    )
    op.create_table(
        "runs",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("summary", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_runs")),
    )
    op.create_table(
        "sync_state",
        sa.Column("source", sa.String(length=40), nullable=False),
        sa.Column("watermark", sa.String(length=64), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("source", name=op.f("pk_sync_state")),
    )
    op.create_table(
        "visitors",
        sa.Column("id", sa.String(length=128), nullable=False),
        sa.Column("first_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ga_client_id", sa.String(length=64), nullable=True),
        sa.Column("fbp", sa.String(length=128), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_visitors")),
    )
    op.create_table(
        "identities",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("visitor_id", sa.String(length=128), nullable=False),
        sa.Column("observed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("event", sa.String(length=40), nullable=False),
        sa.Column("email_sha256", sa.String(length=64), nullable=True),
        sa.Column("email_google_sha256", sa.String(length=64), nullable=True),
        sa.Column("phone_sha256", sa.String(length=64), nullable=True),
        sa.Column("phone_meta_sha256", sa.String(length=64), nullable=True),
        sa.Column("crm_id", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(
            ["visitor_id"], ["visitors.id"], name=op.f("fk_identities_visitor_id_visitors")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_identities")),
    )
    with op.batch_alter_table("identities", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_identities_crm_id"), ["crm_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_identities_email_sha256"), ["email_sha256"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_identities_phone_sha256"), ["phone_sha256"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_identities_visitor_id"), ["visitor_id"], unique=False)

    op.create_table(
        "quarantine",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("source", sa.String(length=40), nullable=False),
        sa.Column("record_id", sa.String(length=255), nullable=False),
        sa.Column("field", sa.String(length=80), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name=op.f("fk_quarantine_run_id_runs")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_quarantine")),
    )
    with op.batch_alter_table("quarantine", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_quarantine_run_id"), ["run_id"], unique=False)

    op.create_table(
        "touchpoints",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("visitor_id", sa.String(length=128), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("channel", sa.String(length=40), nullable=False),
        sa.Column("source", sa.String(length=255), nullable=True),
        sa.Column("medium", sa.String(length=255), nullable=True),
        sa.Column("campaign", sa.String(length=255), nullable=True),
        sa.Column("term", sa.String(length=255), nullable=True),
        sa.Column("content", sa.String(length=255), nullable=True),
        sa.Column("landing_url", sa.Text(), nullable=True),
        sa.Column("referrer", sa.Text(), nullable=True),
        sa.Column("gclid", sa.String(length=255), nullable=True),
        sa.Column("gbraid", sa.String(length=255), nullable=True),
        sa.Column("wbraid", sa.String(length=255), nullable=True),
        sa.Column("fbclid", sa.String(length=255), nullable=True),
        sa.Column("fbc", sa.String(length=300), nullable=True),
        sa.Column("fbp", sa.String(length=128), nullable=True),
        sa.Column("ga_client_id", sa.String(length=64), nullable=True),
        sa.Column("msclkid", sa.String(length=255), nullable=True),
        sa.Column("ttclid", sa.String(length=255), nullable=True),
        sa.Column("li_fat_id", sa.String(length=255), nullable=True),
        sa.Column("consent_ad_user_data", sa.Boolean(), nullable=True),
        sa.Column("consent_ad_personalization", sa.Boolean(), nullable=True),
        sa.Column("user_agent", sa.Text(), nullable=True),
        sa.Column("ip", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(
            ["visitor_id"], ["visitors.id"], name=op.f("fk_touchpoints_visitor_id_visitors")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_touchpoints")),
    )
    with op.batch_alter_table("touchpoints", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_touchpoints_fbclid"), ["fbclid"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_touchpoints_ga_client_id"), ["ga_client_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_touchpoints_gbraid"), ["gbraid"], unique=False)
        batch_op.create_index(batch_op.f("ix_touchpoints_gclid"), ["gclid"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_touchpoints_visitor_id_occurred_at"),
            ["visitor_id", "occurred_at"],
            unique=False,
        )
        batch_op.create_index(batch_op.f("ix_touchpoints_wbraid"), ["wbraid"], unique=False)


def downgrade() -> None:

    with op.batch_alter_table("touchpoints", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_touchpoints_wbraid"))
        batch_op.drop_index(batch_op.f("ix_touchpoints_visitor_id_occurred_at"))
        batch_op.drop_index(batch_op.f("ix_touchpoints_gclid"))
        batch_op.drop_index(batch_op.f("ix_touchpoints_gbraid"))
        batch_op.drop_index(batch_op.f("ix_touchpoints_ga_client_id"))
        batch_op.drop_index(batch_op.f("ix_touchpoints_fbclid"))

    op.drop_table("touchpoints")
    with op.batch_alter_table("quarantine", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_quarantine_run_id"))

    op.drop_table("quarantine")
    with op.batch_alter_table("identities", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_identities_visitor_id"))
        batch_op.drop_index(batch_op.f("ix_identities_phone_sha256"))
        batch_op.drop_index(batch_op.f("ix_identities_email_sha256"))
        batch_op.drop_index(batch_op.f("ix_identities_crm_id"))

    op.drop_table("identities")
    op.drop_table("visitors")
    op.drop_table("sync_state")
    op.drop_table("runs")
    op.drop_table("match_links")
    with op.batch_alter_table("deals", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_deals_status_close_at"))

    op.drop_table("deals")
    op.drop_table("deal_contacts")
    op.drop_table("credits")
    with op.batch_alter_table("conversions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_conversions_source_deal_id"))
        batch_op.drop_index(batch_op.f("ix_conversions_destination_state_next_attempt_at"))

    op.drop_table("conversions")
    with op.batch_alter_table("contacts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_contacts_phone_sha256"))
        batch_op.drop_index(batch_op.f("ix_contacts_email_sha256"))

    op.drop_table("contacts")
