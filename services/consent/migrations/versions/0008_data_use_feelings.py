"""The data-use question: counts per answer, and the pseudonyms of those who answered, apart.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "data_use_feelings",
        sa.Column("answer", sa.String(32), primary_key=True),
        sa.Column("count", sa.Integer, nullable=False),
    )
    op.create_table("data_use_answered", sa.Column("subject", sa.String(64), primary_key=True))


def downgrade() -> None:
    op.drop_table("data_use_answered")
    op.drop_table("data_use_feelings")
