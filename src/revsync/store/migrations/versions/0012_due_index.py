"""conversions: an index in the order ``ledger.due`` hands rows out

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-05 01:30:00
"""

from __future__ import annotations

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

_NAME = "ix_conversions_destination_state_batch_group_created_at_key"


def upgrade() -> None:
    op.create_index(
        _NAME, "conversions", ["destination", "state", "batch_group", "created_at", "key"]
    )


def downgrade() -> None:
    op.drop_index(_NAME, table_name="conversions")
