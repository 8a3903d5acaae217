"""History retirement: `consent_records.retired_at`, set when a superseded row outlived its
purpose's retention and was pseudonymized (its customer id replaced by the pseudonym, user agent
and IP prefix dropped).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from services.consent.adapters.sql_tables import UtcDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("consent_records", sa.Column("retired_at", UtcDateTime, nullable=True))
    # The retention job looks for rows of a purpose recorded before a cutoff, not yet retired.
    op.create_index("ix_consent_records_retention", "consent_records", ["purpose", "recorded_at"])


def downgrade() -> None:
    op.drop_index("ix_consent_records_retention", "consent_records")
    op.drop_column("consent_records", "retired_at")
