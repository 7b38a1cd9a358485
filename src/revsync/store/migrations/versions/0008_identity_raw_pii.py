"""identities.email/phone: raw values, kept only when collector.store_raw_pii is on

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04 22:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("identities") as batch:
        batch.add_column(sa.Column("email", sa.String(length=320), nullable=True))
        batch.add_column(sa.Column("phone", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("identities") as batch:
        batch.drop_column("phone")
        batch.drop_column("email")
