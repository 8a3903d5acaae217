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
    text,
)
from sqlalchemy.engine import Connection

metadata = MetaData()

# The ledger: `body` holds the exact bytes hashed (the record's canonical JSON, without `hash`),
# and every other column the API, the relay and queries read is generated from it by the
# database (DERIVED; migration 0002), so no column can say anything the hash does not cover.
# Only seq, body and hash are ever written.
records = Table(
    "audit_records",
    metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("body", Text, nullable=False),
    Column("hash", String(64), nullable=False),
    Column("at", Text),
    Column("kind", Text),
    Column("subject", Text),
    Column("event_id", Text),
    Column("payload", Text),
    Column("prev_hash", Text),
)

# The generated columns, each the body's key of the same name.
DERIVED = ("at", "kind", "subject", "event_id", "payload", "prev_hash")


def derived_expression(dialect: str, name: str) -> str:
    """How the database computes a generated column from `body` (what verification checks for).

    SQLite: virtual (computed on read, stored only in the indexes). PostgreSQL (15) has only
    stored generated columns: written by the database alone, refused to any UPDATE.
    """
    if dialect == "postgresql":
        # `json`, not `jsonb`: `->` returns the payload's text exactly as it is in the body.
        return f"(body::json {'->' if name == 'payload' else '->>'} '{name}')"
    return f"json_extract(body, '$.{name}')"


def ledger_ddl(dialect: str, table: str) -> str:
    """CREATE TABLE of the ledger (migration 0002)."""
    kind = "STORED" if dialect == "postgresql" else "VIRTUAL"
    # INTEGER PRIMARY KEY is SQLite's rowid: the verifying scan reads the table in seq order.
    seq = "seq BIGINT PRIMARY KEY" if dialect == "postgresql" else "seq INTEGER PRIMARY KEY"
    derived = [
        f"{name} TEXT GENERATED ALWAYS AS ({derived_expression(dialect, name)}) {kind}" for name in DERIVED
    ]
    columns = ",\n  ".join([seq, "body TEXT NOT NULL", "hash VARCHAR(64) NOT NULL", *derived])
    return f"CREATE TABLE {table} (\n  {columns}\n)"


def underived_columns(connection: Connection) -> list[str]:
    """The DERIVED columns of the ledger that the database no longer generates from `body`."""
    if connection.dialect.name == "postgresql":
        query = text(
            "SELECT column_name, generation_expression FROM information_schema.columns WHERE "
            "table_schema = current_schema() AND table_name = 'audit_records' AND is_generated = 'ALWAYS'"
        )
        found: dict[str, str] = dict(connection.execute(query).tuples().all())
        # As PostgreSQL prints the expressions of ledger_ddl back.
        wanted = {n: f"((body)::json {'->' if n == 'payload' else '->>'} '{n}'::text)" for n in DERIVED}
        return [name for name in DERIVED if found.get(name) != wanted[name]]
    query = text("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'audit_records'")
    ddl = connection.execute(query).scalar() or ""
    return [
        name
        for name in DERIVED
        if f"{name} TEXT GENERATED ALWAYS AS ({derived_expression('sqlite', name)}) VIRTUAL" not in ddl
    ]


def ledger_indexes(table: str) -> list[str]:
    """The ledger's indexes: on generated columns, so they hold values taken from `body`."""
    return [
        f"CREATE INDEX ix_{table}_kind ON {table} (kind)",
        f"CREATE INDEX ix_{table}_subject ON {table} (subject)",
        f"CREATE UNIQUE INDEX ix_{table}_event_id ON {table} (event_id)",
    ]


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
