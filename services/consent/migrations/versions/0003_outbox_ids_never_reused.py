"""Outbox ids never reused: AUTOINCREMENT on SQLite (PostgreSQL's identity never reuses one).

Without it SQLite gives a new row the id of the highest row deleted before it (an erasure
deletes the customer's pending rows, a sent erasure row is purged), and the relay, marking
by id the rows it read, marked a newer row it had never sent.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    # SQLite cannot alter a key in place: the table is copied into one declared AUTOINCREMENT
    # (the counter starts above the highest id copied).
    with op.batch_alter_table("outbox", recreate="always", table_kwargs={"sqlite_autoincrement": True}):
        pass


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    with op.batch_alter_table("outbox", recreate="always", table_kwargs={"sqlite_autoincrement": False}):
        pass
