"""conversions.batch_group: rows that may share one request (GA4: client, person, consent)

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04 22:50:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Rows planned before have none: they are sent as before, ahead of the grouped ones.
    with op.batch_alter_table("conversions") as batch:
        batch.add_column(sa.Column("batch_group", sa.String(length=32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("conversions") as batch:
        batch.drop_column("batch_group")
