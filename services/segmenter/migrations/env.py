"""Alembic environment: the segmenter's definition store migrations (`shared.database.migration_env`)."""

from __future__ import annotations

from shared.database import migration_env

migration_env()
