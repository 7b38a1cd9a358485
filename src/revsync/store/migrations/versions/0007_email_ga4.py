"""contacts.email_ga4_sha256: GA4's own normalisation of a contact's email

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04 20:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Rows stored before hold no GA4 hash; their email_google_sha256 was made by the rule
    # GA4 uses (gmail dots only), which is what GA4 falls back to.
    with op.batch_alter_table("contacts") as batch:
        batch.add_column(sa.Column("email_ga4_sha256", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("contacts") as batch:
        batch.drop_column("email_ga4_sha256")
