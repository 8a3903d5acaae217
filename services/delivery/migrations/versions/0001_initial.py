"""The first delivery schema: destinations, each customer's consent and segments, holdings, outbox.

A store created before migrations (by the service's own DDL) already has these tables: each is
created only where it is missing, so such a store is adopted as it is.

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

TEXT = sa.Text()


def upgrade() -> None:
    existing = set(sa.inspect(op.get_bind()).get_table_names())
    tables = {
        "destinations": (
            sa.Column("destination_id", TEXT, primary_key=True),
            sa.Column("spec", TEXT, nullable=False),
            sa.Column("signing_secret", TEXT, nullable=False),
        ),
        "consent": (
            sa.Column("customer_id", TEXT, primary_key=True),
            sa.Column("purposes", TEXT, nullable=False),
        ),
        "members": (
            sa.Column("customer_id", TEXT, primary_key=True),
            sa.Column("segment_id", TEXT, primary_key=True),
        ),
        # The first release's column order (its primary key is destination, customer, segment).
        "holdings": (
            sa.Column("destination_id", TEXT, nullable=False),
            sa.Column("segment_id", TEXT, nullable=False),
            sa.Column("customer_id", TEXT, nullable=False),
            sa.PrimaryKeyConstraint("destination_id", "customer_id", "segment_id"),
        ),
        # A destination whose endpoint answered 410 Gone: nothing goes to it until a PUT resumes it.
        "paused": (
            sa.Column("destination_id", TEXT, primary_key=True),
            sa.Column("reason", TEXT, nullable=False),
        ),
    }
    for name, columns in tables.items():
        if name not in existing:
            op.create_table(name, *columns)
    if "deliveries" not in existing:
        op.create_table(
            "deliveries",
            # AUTOINCREMENT: a seq is never reused, so the oldest pending row is always the first.
            sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("idempotency_key", TEXT, nullable=False, unique=True),
            sa.Column("destination_id", TEXT, nullable=False),
            sa.Column("customer_id", TEXT, nullable=False),
            sa.Column("segment_id", TEXT, nullable=False),
            sa.Column("action", TEXT, nullable=False),
            sa.Column("reason", TEXT, nullable=False),
            sa.Column("at", TEXT, nullable=False),
            # pending, delivered, dead, withheld
            sa.Column("status", TEXT, nullable=False, server_default="pending"),
            sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
            sa.Column("next_attempt_at", sa.Float, nullable=False, server_default="0"),
            sa.Column("last_error", TEXT),
            sqlite_autoincrement=True,
        )


def downgrade() -> None:
    for name in ("deliveries", "paused", "holdings", "members", "consent", "destinations"):
        op.drop_table(name)
