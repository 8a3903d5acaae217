"""Notice versions: the version of the purpose's notice each choice was made under, in the history
and in the current projection (NULL for rows recorded before it, or when the caller gave none).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("consent_records", sa.Column("notice_version", sa.Integer, nullable=True))
    op.add_column("consent_current", sa.Column("notice_version", sa.Integer, nullable=True))


def downgrade() -> None:
    op.drop_column("consent_current", "notice_version")
    op.drop_column("consent_records", "notice_version")
