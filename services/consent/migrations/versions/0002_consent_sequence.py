"""The consent sequence: a column on history and current rows, and its counter.

Rows recorded before this revision keep a NULL sequence (they are "pre-sequence").

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("consent_records", sa.Column("sequence", sa.BigInteger))
    op.add_column("consent_current", sa.Column("sequence", sa.BigInteger))
    if op.get_bind().dialect.name == "postgresql":
        # CACHE 1: each session draws from the shared counter, so values grow in drawing order.
        op.execute("CREATE SEQUENCE consent_sequence AS BIGINT START 1 CACHE 1")
    else:
        counter = op.create_table("consent_sequence", sa.Column("last", sa.BigInteger, nullable=False))
        op.bulk_insert(counter, [{"last": 0}])


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP SEQUENCE consent_sequence")
    else:
        op.drop_table("consent_sequence")
    op.drop_column("consent_current", "sequence")
    op.drop_column("consent_records", "sequence")
