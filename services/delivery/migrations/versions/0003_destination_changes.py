"""The outbox of changes to destinations, relayed to `delivery.destinations` for the ledger.

Each row is written in the transaction that made the change (a PUT, a 410's pause, a DELETE), so
no change is lost between the store and the broker; `reported` is set once the broker has it.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
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
        "destination_changes",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("destination_id", sa.Text, nullable=False),
        sa.Column("change", sa.Text, nullable=False),
        sa.Column("segments", sa.Text, nullable=False),  # JSON list of ids
        sa.Column("purposes", sa.Text, nullable=False),  # JSON list of ids
        sa.Column("pending", sa.Integer, nullable=False),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("reported", sa.Integer, nullable=False, server_default="0"),
    )
    op.create_index("destination_changes_unreported", "destination_changes", ["reported", "seq"])


def downgrade() -> None:
    op.drop_table("destination_changes")
