"""writebacks: the attribution payload last written onto each CRM contact or lead

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "writebacks",
        sa.Column("source", sa.String(length=40), nullable=False),
        sa.Column("crm_id", sa.String(length=64), nullable=False),
        sa.Column("payload_hash", sa.String(length=64), nullable=False),
        sa.Column("pushed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("source", "crm_id", name=op.f("pk_writebacks")),
    )


def downgrade() -> None:
    op.drop_table("writebacks")
