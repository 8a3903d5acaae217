"""The initial consent schema: history, current projection, outbox, processed requests, erasures.

Revision ID: 0001
Revises:
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer, "sqlite")
AT = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "consent_records",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column("event_id", sa.String(64), nullable=False, unique=True),
        sa.Column("customer_id", sa.String(128), nullable=False),
        sa.Column("purpose", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("previous_status", sa.String(16)),
        sa.Column("reason", sa.String(16), nullable=False),
        sa.Column("method", sa.String(16), nullable=False),
        sa.Column("source", sa.String(256), nullable=False),
        sa.Column("jurisdiction", sa.String(8), nullable=False),
        sa.Column("policy_version", sa.String(256), nullable=False),
        sa.Column("user_agent", sa.String(256)),
        sa.Column("ip_truncated", sa.String(64)),
        sa.Column("recorded_at", AT, nullable=False),
        sa.Column("expires_at", AT),
        sa.Column("published", sa.Boolean, nullable=False),
    )
    op.create_index("ix_consent_records_customer", "consent_records", ["customer_id", "id"])
    op.create_table(
        "consent_current",
        sa.Column("customer_id", sa.String(128), primary_key=True),
        sa.Column("purpose", sa.String(64), primary_key=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("source", sa.String(256), nullable=False),
        sa.Column("jurisdiction", sa.String(8), nullable=False),
        sa.Column("policy_version", sa.String(256), nullable=False),
        sa.Column("recorded_at", AT, nullable=False),
        sa.Column("expires_at", AT),
    )
    op.create_index("ix_consent_current_expiry", "consent_current", ["status", "expires_at"])
    op.create_table(
        "outbox",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column("event_id", sa.String(64), nullable=False),
        sa.Column("customer_id", sa.String(128), nullable=False),
        sa.Column("topic", sa.String(64), nullable=False),
        sa.Column("payload", sa.LargeBinary),
        sa.Column("created_at", AT, nullable=False),
        sa.Column("sent_at", AT),
        sa.Column("purge_when_sent", sa.Boolean, nullable=False),
    )
    op.create_index("ix_outbox_pending", "outbox", ["sent_at", "id"])
    op.create_index("ix_outbox_customer", "outbox", ["customer_id"])
    op.create_table(
        "processed_requests",
        sa.Column("request_id", sa.String(128), primary_key=True),
        sa.Column("processed_at", AT, nullable=False),
    )
    op.create_table(
        "erasures",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column("subject", sa.String(64), nullable=False),
        sa.Column("event_id", sa.String(64), nullable=False, unique=True),
        sa.Column("requested_at", AT, nullable=False),
        sa.Column("records_deleted", sa.Integer, nullable=False),
    )
    op.create_index("ix_erasures_subject", "erasures", ["subject"])


def downgrade() -> None:
    for table in ("erasures", "processed_requests", "outbox", "consent_current", "consent_records"):
        op.drop_table(table)
