"""The SQLAlchemy engine for the audit database: SQLite by default, PostgreSQL in production."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine, text
from sqlalchemy.engine import Connection

from shared.database import make_store_engine, upgrade_schema

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"

# A PostgreSQL advisory lock id for "the writer of this ledger".
_LEDGER_LOCK = 0x5E6A0D17


def make_engine(url: str) -> Engine:
    # No server-side prepared statements on PostgreSQL: a generic plan cached while the ledger
    # was small (a sequential scan) would stay in use as it grows, making each append slow.
    return make_store_engine(url, _sqlite_begin, postgresql_connect_args={"prepare_threshold": None})


def _sqlite_begin(connection: Connection) -> None:
    immediate = connection.get_execution_options().get("ledger_writer", False)
    connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def ping(engine: Engine) -> None:
    """A trivial query for readiness; raises while the database does not answer."""
    with engine.connect() as connection:
        connection.execute(text("SELECT 1"))


def writer_connection(engine: Engine) -> Connection:
    """A connection whose transactions hold the ledger's write lock, so appends stay serial."""
    return engine.connect().execution_options(ledger_writer=True)


def lock_ledger(connection: Connection) -> None:
    """Serialize writers (every audit process on this database) for this transaction."""
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _LEDGER_LOCK})


def create_schema(engine: Engine) -> None:
    """Upgrade the schema to the newest revision (idempotent): tables, and the triggers that
    refuse UPDATE and DELETE of the append-only ones. Under the writer lock, so audit processes
    started together (or an append) never meet a half-migrated ledger."""
    with writer_connection(engine) as connection, connection.begin():
        lock_ledger(connection)
        upgrade_schema(connection, MIGRATIONS)
