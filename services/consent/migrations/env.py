"""Alembic environment: the consent store's migrations (`shared.database.migration_env`)."""

from __future__ import annotations

from services.consent.adapters.sql_tables import metadata
from shared.database import migration_env

migration_env(metadata)
