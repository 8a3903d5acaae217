"""Alembic environment: runs on the connection the audit service hands over (see sql_database.py)."""

from __future__ import annotations

from alembic import context

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("audit migrations run through services.audit.adapters.sql_database.create_schema")

context.configure(connection=connection, target_metadata=None)
with context.begin_transaction():
    context.run_migrations()
