"""reports: exchange rates, deal stage history, gclid clicks, keyword spend in micros, deal accounts

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-05 05:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)
_COST = sa.Numeric(20, 6)  # Google Ads reports cost in micros


def upgrade() -> None:
    op.add_column("deals", sa.Column("account_id", sa.String(length=64), nullable=True))
    op.add_column("deals", sa.Column("created_at", _TS, nullable=True))
    keyed = ["platform", "account", "day", "campaign", "ad_group", "keyword"]
    columns = [
        sa.Column("ad_group", sa.String(length=255), nullable=False, server_default=""),
        sa.Column("keyword", sa.String(length=255), nullable=False, server_default=""),
        sa.Column("campaign_id", sa.String(length=64), nullable=True),
    ]
    if op.get_context().dialect.name == "sqlite":  # a primary key changes by a copy
        with op.batch_alter_table("spend", recreate="always") as batch:
            for column in columns:
                batch.add_column(column)
            batch.alter_column("cost", type_=_COST, existing_nullable=False)
            batch.drop_constraint("pk_spend", type_="primary")
            batch.create_primary_key("pk_spend", keyed)
    else:  # plain ALTERs, which `db upgrade --sql` can print without a live database
        for column in columns:
            op.add_column("spend", column)
        op.alter_column("spend", "cost", type_=_COST, existing_nullable=False)
        op.drop_constraint("pk_spend", "spend", type_="primary")
        op.create_primary_key("pk_spend", "spend", keyed)
    op.create_table(
        "exchange_rates",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("base", sa.String(length=3), nullable=False),
        sa.Column("quote", sa.String(length=3), nullable=False),
        sa.Column("rate", sa.Numeric(24, 10), nullable=False),
        sa.PrimaryKeyConstraint("day", "base", "quote", name=op.f("pk_exchange_rates")),
    )
    op.create_table(
        "deal_stages",
        sa.Column("source", sa.String(length=40), nullable=False),
        sa.Column("deal_id", sa.String(length=64), nullable=False),
        sa.Column("entered_at", _TS, nullable=False),
        sa.Column("stage", sa.String(length=255), nullable=False),
        sa.Column("origin", sa.String(length=16), nullable=False),
        sa.PrimaryKeyConstraint(
            "source", "deal_id", "entered_at", "stage", name=op.f("pk_deal_stages")
        ),
    )
    op.create_table(
        "gclid_clicks",
        sa.Column("gclid", sa.String(length=255), nullable=False),
        sa.Column("customer_id", sa.String(length=20), nullable=False),
        sa.Column("day", sa.Date(), nullable=True),
        sa.Column("campaign_id", sa.String(length=32), nullable=True),
        sa.Column("campaign", sa.String(length=255), nullable=True),
        sa.Column("ad_group_id", sa.String(length=32), nullable=True),
        sa.Column("ad_group", sa.String(length=255), nullable=True),
        sa.Column("keyword", sa.String(length=255), nullable=True),
        sa.Column("match_type", sa.String(length=20), nullable=True),
        sa.Column("resolved_at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("gclid", name=op.f("pk_gclid_clicks")),
    )


def downgrade() -> None:
    op.drop_table("gclid_clicks")
    op.drop_table("deal_stages")
    op.drop_table("exchange_rates")
    with op.batch_alter_table("spend", recreate="always") as batch:
        batch.alter_column("cost", type_=sa.Numeric(18, 4), existing_nullable=False)
        batch.drop_constraint("pk_spend", type_="primary")
        batch.drop_column("campaign_id")
        batch.drop_column("keyword")
        batch.drop_column("ad_group")
        batch.create_primary_key("pk_spend", ["platform", "account", "day", "campaign"])
    with op.batch_alter_table("deals") as batch:
        batch.drop_column("created_at")
        batch.drop_column("account_id")
