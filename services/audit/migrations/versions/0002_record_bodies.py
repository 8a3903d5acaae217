"""The ledger keeps the bytes it hashed: `body`, with every other column generated from it.

Before, each of the eight columns was stored on its own and verification rebuilt the canonical
JSON from them (reading eight columns a row cost several times the hash). Now verification
hashes `body` as read, and the columns the API and queries use cannot disagree with it.

The table is rebuilt (SQLite cannot turn a column into a generated one): each record's body is
its canonical form built from its columns, the very bytes its hash was computed over, so a
record edited before the migration still fails verification after it. In one transaction;
the append-only triggers are re-created on the new table.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from services.audit.adapters.sql_tables import (
    ledger_ddl,
    ledger_indexes,
    postgresql_guards,
    sqlite_guards,
)
from services.audit.domain.ledger import canonical

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

CHUNK = 10_000
OLD_COLUMNS = "seq, at, kind, subject, event_id, payload, prev_hash, hash"


def upgrade() -> None:
    bind = op.get_bind()
    if "body" in {column["name"] for column in sa.inspect(bind).get_columns("audit_records")}:
        return  # already rebuilt (a database whose version table was lost)
    dialect = bind.dialect.name
    op.execute(ledger_ddl(dialect, "audit_records_new"))
    _copy(bind)
    # DROP TABLE fires no row trigger; the old table's triggers and indexes go with it.
    op.execute("DROP TABLE audit_records")
    op.execute("ALTER TABLE audit_records_new RENAME TO audit_records")
    if dialect == "postgresql":
        op.execute("ALTER INDEX audit_records_new_pkey RENAME TO audit_records_pkey")
    for statement in ledger_indexes("audit_records"):
        op.execute(statement)
    for statement in (postgresql_guards if dialect == "postgresql" else sqlite_guards)("audit_records"):
        op.execute(statement)


def _copy(bind: sa.Connection) -> None:
    insert = sa.text("INSERT INTO audit_records_new (seq, body, hash) VALUES (:seq, :body, :hash)")
    after = -1
    while True:
        rows = bind.execute(
            sa.text(f"SELECT {OLD_COLUMNS} FROM audit_records WHERE seq > :after ORDER BY seq LIMIT {CHUNK}"),
            {"after": after},
        ).all()
        if not rows:
            return
        bodies = [{"seq": r[0], "body": canonical(*r[:7]).decode(), "hash": r[7]} for r in rows]
        bind.execute(insert, bodies)
        after = rows[-1][0]


def downgrade() -> None:
    raise NotImplementedError("the audit ledger is append-only: its schema is never rolled back")
