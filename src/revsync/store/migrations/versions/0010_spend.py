"""spend: daily ad cost, clicks and impressions per platform, account and campaign

Revision ID: 0010
Revises: 0008
Create Date: 2026-12-04 23:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "spend",
        sa.Column("platform", sa.String(length=20), nullable=False),
        sa.Column("account", sa.String(length=64), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("campaign", sa.String(length=255), nullable=False),
        sa.Column("cost", sa.Numeric(18, 4), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("clicks", sa.Integer(), nullable=True),
        sa.Column("impressions", sa.Integer(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("platform", "account", "day", "campaign", name=op.f("pk_spend")),
    )
    op.create_index(op.f("ix_spend_day"), "spend", ["day"])


def downgrade() -> None:
    op.drop_index(op.f("ix_spend_day"), table_name="spend")
    op.drop_table("spend")
