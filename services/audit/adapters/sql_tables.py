"""The audit database: the append-only ledger, its checkpoints, and the little state beside them."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
)

metadata = MetaData()

# The ledger. Every column is part of the hashed canonical form; `payload` holds the
# payload's canonical JSON text so the bytes hashed can be rebuilt exactly.
records = Table(
    "audit_records",
    metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("at", String(40), nullable=False),
    Column("kind", String(64), nullable=False, index=True),
    Column("subject", String(64), nullable=True, index=True),
    Column("event_id", String(200), nullable=False, unique=True),
    Column("payload", Text, nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
)

# The ledger's Merkle tree: the hash of every perfect subtree of 16 leaves or more, (level, idx)
# covering the records [idx << level, (idx + 1) << level), written with the records that complete
# it, so a proof reads O(log n) rows instead of every leaf. Append-only like the ledger; a wrong
# node gives a proof that fails against the signed root, never a false one.
merkle_nodes = Table(
    "audit_merkle_nodes",
    metadata,
    Column("level", SmallInteger, primary_key=True, autoincrement=False),
    Column("idx", BigInteger, primary_key=True, autoincrement=False),
    Column("hash", LargeBinary(32), nullable=False),
)

# Signed tree heads, append-only like the ledger.
checkpoints = Table(
    "audit_checkpoints",
    metadata,
    Column("tree_size", BigInteger, primary_key=True, autoincrement=False),
    Column("root", String(64), nullable=False),
    Column("timestamp", String(40), nullable=False),
    Column("signature", String(128), nullable=False),
    # The hash of record tree_size - 1, signed too: with an intact chain it pins every record
    # of the tree, so verification need not recompute the Merkle root.
    Column("head", String(64), nullable=False),
    Column("head_signature", String(128), nullable=False),
)

# The latest definition of every segment seen on `segment.definitions` (for the RoPA and
# to tell a republished definition from a new one).
definitions = Table(
    "audit_segment_definitions",
    metadata,
    Column("segment_id", String(64), primary_key=True),
    Column("event_id", String(200), nullable=False),
    Column("payload", Text, nullable=False),
    Column("deleted", Boolean, nullable=False),
)

# How far the ledger has been published to `audit.log` (one row, id 1).
publication = Table(
    "audit_publication",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("last_seq", BigInteger, nullable=False),
)

APPEND_ONLY = ("audit_records", "audit_checkpoints", "audit_merkle_nodes")


def sqlite_guards(table: str) -> list[str]:
    """Triggers that make SQLite refuse any UPDATE or DELETE of `table`."""
    return [
        f"CREATE TRIGGER IF NOT EXISTS {table}_no_{op.lower()} BEFORE {op} ON {table} "
        f"BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END"
        for op in ("UPDATE", "DELETE")
    ]


def postgresql_guards(table: str) -> list[str]:
    """A trigger function and triggers that make PostgreSQL refuse UPDATE, DELETE and TRUNCATE."""
    return [
        "CREATE OR REPLACE FUNCTION audit_refuse_change() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP; END $$",
        f"CREATE OR REPLACE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
        "FOR EACH ROW EXECUTE FUNCTION audit_refuse_change()",
        f"CREATE OR REPLACE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
        "FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change()",
    ]
