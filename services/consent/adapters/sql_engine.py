"""Engines for the consent store (SQLite or PostgreSQL) and the alembic upgrade run at start."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from weakref import WeakKeyDictionary

from sqlalchemy import Connection, Engine, text

from shared.database import make_store_engine, upgrade_schema

_SQLITE_WRITERS: WeakKeyDictionary[Engine, threading.Lock] = WeakKeyDictionary()
MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"
# Any fixed 64-bit number, the same in every replica (the relay lease uses ...0001).
MIGRATION_LOCK_KEY = 0x5E6A_C0DE_0002


def make_engine(url: str) -> Engine:
    """An engine whose writes serialize per customer (see `lock_customer`)."""
    engine = make_store_engine(url, _sqlite_begin, pool={"pool_size": 10, "max_overflow": 10})
    if engine.dialect.name == "sqlite":
        _SQLITE_WRITERS[engine] = threading.Lock()
    return engine


@contextmanager
def write_transaction(engine: Engine, durable: bool = True) -> Iterator[Connection]:
    """A write transaction. SQLite writers of this process queue on a lock: contending on the
    database lock instead would make SQLite's busy handler sleep (up to 100 ms a try).

    `durable=False` commits without waiting for the disk (SQLite WAL `synchronous=NORMAL`,
    PostgreSQL `synchronous_commit=off`): the commit survives a crash of the process, but a
    power cut may roll back the last such commits (never a durable one made after them). Only
    for writes whose loss is harmless to redo, like marking outbox rows sent.
    """
    lock = _SQLITE_WRITERS.get(engine)
    with lock or nullcontext(), engine.connect() as connection:
        connection = connection.execution_options(sqlite_synchronous="FULL" if durable else "NORMAL")
        with connection.begin():
            if not durable and connection.dialect.name == "postgresql":
                connection.execute(text("SET LOCAL synchronous_commit TO OFF"))
            yield connection


def truncate_log(engine: Engine) -> bool:
    """Checkpoint SQLite's write-ahead log and truncate it; whether it completed (a reader on an
    older snapshot makes it give up). `secure_delete` zeroes deleted rows in the database file,
    but the log keeps the earlier versions of their pages until it is truncated. PostgreSQL keeps
    its log outside DATA_DIR (docs/consent.md, "Erasure"): nothing to do here."""
    lock = _SQLITE_WRITERS.get(engine)
    if lock is None:
        return True
    # The raw DB-API connection runs in autocommit (`configure_sqlite`): a checkpoint cannot
    # run inside the transaction SQLAlchemy would begin.
    with lock:
        connection = engine.raw_connection()
        try:
            cursor = connection.cursor()
            busy, _, _ = cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            cursor.close()
        finally:
            connection.close()
    return busy == 0


def _sqlite_begin(connection: Connection) -> None:
    # IMMEDIATE takes the write lock at BEGIN, so a read-then-write never meets a newer commit.
    options = connection.get_execution_options()
    mode = options.get("sqlite_begin", "IMMEDIATE")
    if mode == "IMMEDIATE":
        # Set on every write, as connections are pooled: FULL unless `write_transaction` was
        # told the commit need not wait for the disk.
        connection.exec_driver_sql(f"PRAGMA synchronous={options.get('sqlite_synchronous', 'FULL')}")
    connection.exec_driver_sql(f"BEGIN {mode}")


def reader(connection: Connection) -> Connection:
    """Mark a connection as read-only, so SQLite begins a deferred (shared) transaction."""
    return connection.execution_options(sqlite_begin="DEFERRED")


def lock_customer(connection: Connection, customer_id: str) -> None:
    """Serialize writers of one customer; SQLite's IMMEDIATE lock already serializes all writers."""
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(hashtextextended(:c, 0))"), {"c": customer_id})


def next_sequences(connection: Connection, count: int) -> list[int]:
    """`count` new consent sequence numbers, ascending, drawn inside the caller's transaction.

    Drawn under the customer's lock (`lock_customer`), so a customer's numbers grow in commit
    order. The counter is one per database, not per customer: it survives an erasure without a
    row naming the customer, and replicas share it. Values are unique; gaps carry no meaning.
    """
    if connection.dialect.name == "postgresql":
        query = text("SELECT nextval('consent_sequence') FROM generate_series(1, :n)")
        return sorted(connection.execute(query, {"n": count}).scalars())
    # SQLite has one writer at a time (BEGIN IMMEDIATE), so the row cannot move under us.
    bump = text("UPDATE consent_sequence SET last = last + :n RETURNING last")
    last = int(connection.execute(bump, {"n": count}).scalar_one())
    return list(range(last - count + 1, last + 1))


def run_migrations(engine: Engine) -> None:
    """Upgrade the schema to the newest revision (idempotent; never drops data)."""
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            # Replicas started together would otherwise race to create the same tables.
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
        upgrade_schema(connection, MIGRATIONS)


def ping(engine: Engine) -> None:
    """A trivial query for readiness; raises while the database does not answer."""
    with engine.connect() as connection:
        # Deferred: a probe must not queue for SQLite's write lock behind a group commit.
        reader(connection).execute(text("SELECT 1"))
