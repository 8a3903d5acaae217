"""What the latency metric, the ledger's outcomes and erasure need on each outbox row.

`changed_at` starts the latency; `subject` and `ledger_subject` are fixed when a row is enqueued
(an erasure then replaces its customer id); `reported` and `settled_at` feed `delivery.outcomes`.
Rows are queued by pseudonym rather than id. A store that already has a column (made by the
service's own DDL before migrations) keeps it. The subjects of older rows are HMACs, computed by
the store after the upgrade (`SqliteDeliveryStore._backfill`).

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

COLUMNS = (
    sa.Column("changed_at", sa.Float),
    sa.Column("subject", sa.Text),
    sa.Column("ledger_subject", sa.Text),
    sa.Column("reported", sa.Integer, nullable=False, server_default="0"),
    sa.Column("settled_at", sa.Float),
)
INDEXES = {
    "deliveries_queue": ["status", "destination_id", "ledger_subject", "seq"],
    "deliveries_unreported": ["reported", "status"],
    "deliveries_customer": ["customer_id"],
}


def upgrade() -> None:
    inspector = sa.inspect(op.get_bind())
    present = {column["name"] for column in inspector.get_columns("deliveries")}
    for column in COLUMNS:
        if column.name not in present:
            op.add_column("deliveries", column)
    indexes = {index["name"] for index in inspector.get_indexes("deliveries")}
    for name, columns in INDEXES.items():
        if name not in indexes:
            op.create_index(name, "deliveries", columns)
    if "deliveries_pending" in indexes:
        op.drop_index("deliveries_pending", "deliveries")


def downgrade() -> None:
    for name in INDEXES:
        op.drop_index(name, "deliveries")
    op.create_index("deliveries_pending", "deliveries", ["status", "destination_id", "customer_id", "seq"])
    for column in COLUMNS:
        op.drop_column("deliveries", column.name)
