"""Alembic migrations of the segmenter's definition store (adapters/sqlite_definitions.py)."""
