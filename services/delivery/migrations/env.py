"""Alembic environment: runs on the connection the delivery store hands over (sqlite_store.py)."""

from __future__ import annotations

from alembic import context

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("delivery migrations run through sqlite_store.run_migrations")

context.configure(connection=connection, target_metadata=None, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
