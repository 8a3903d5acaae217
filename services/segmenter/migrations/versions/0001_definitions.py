"""The segmenter's copy of segment definitions: one row per segment id, kept once deleted.

A store created before migrations (by the store's own DDL) already has the table: it is created
only where it is missing, so such a store is adopted as it is.

Revision ID: 0001
Revises:
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    if "definitions" in sa.inspect(op.get_bind()).get_table_names():
        return
    op.create_table(
        "definitions",
        sa.Column("segment_id", sa.Text(), primary_key=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("deleted", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("body", sa.Text()),
    )


def downgrade() -> None:
    op.drop_table("definitions")
