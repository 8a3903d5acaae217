"""Alembic environment: runs on the connection the consent service hands over (see db/engine.py)."""

from __future__ import annotations

from alembic import context

from services.consent.adapters.sql_tables import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("consent migrations run through services.consent.adapters.sql_engine.run_migrations")

context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
