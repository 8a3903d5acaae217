"""Zero-party preferences: what each customer stated on the preference center, one row per key.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from services.consent.adapters.sql_tables import UtcDateTime

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "customer_preferences",
        sa.Column("customer_id", sa.String(128), primary_key=True),
        sa.Column("preference", sa.String(64), primary_key=True),
        sa.Column("value", sa.String(1024), nullable=False),
        sa.Column("updated_at", UtcDateTime, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("customer_preferences")
