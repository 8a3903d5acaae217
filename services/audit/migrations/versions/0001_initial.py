"""The audit schema as it was before migrations: ledger, Merkle nodes, checkpoints, definitions,
publication mark, and the triggers that make the first three append-only.

Ledgers created before alembic already have these tables (created at start): each is created
only when missing, so this revision adopts them as they are.

Revision ID: 0001
Revises:
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from services.audit.adapters.sql_tables import postgresql_guards, sqlite_guards

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TABLES = (
    (
        "audit_records",
        sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("at", sa.String(40), nullable=False),
        sa.Column("kind", sa.String(64), nullable=False, index=True),
        sa.Column("subject", sa.String(64), nullable=True, index=True),
        sa.Column("event_id", sa.String(200), nullable=False, unique=True),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    ),
    (
        "audit_merkle_nodes",
        sa.Column("level", sa.SmallInteger, primary_key=True, autoincrement=False),
        sa.Column("idx", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("hash", sa.LargeBinary(32), nullable=False),
    ),
    (
        "audit_checkpoints",
        sa.Column("tree_size", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("root", sa.String(64), nullable=False),
        sa.Column("timestamp", sa.String(40), nullable=False),
        sa.Column("signature", sa.String(128), nullable=False),
        sa.Column("head", sa.String(64), nullable=False),
        sa.Column("head_signature", sa.String(128), nullable=False),
    ),
    (
        "audit_segment_definitions",
        sa.Column("segment_id", sa.String(64), primary_key=True),
        sa.Column("event_id", sa.String(200), nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("deleted", sa.Boolean, nullable=False),
    ),
    (
        "audit_publication",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("last_seq", sa.BigInteger, nullable=False),
    ),
)
APPEND_ONLY = ("audit_records", "audit_checkpoints", "audit_merkle_nodes")


def upgrade() -> None:
    bind = op.get_bind()
    metadata = sa.MetaData()
    for name, *columns in TABLES:
        sa.Table(name, metadata, *columns)
    metadata.create_all(bind, checkfirst=True)
    guards = postgresql_guards if bind.dialect.name == "postgresql" else sqlite_guards
    for table in APPEND_ONLY:
        for statement in guards(table):
            op.execute(statement)


def downgrade() -> None:
    raise NotImplementedError("the audit ledger is append-only: its schema is never rolled back")
