"""Database helpers shared by every service with a SQL store: URLs, and the settings each SQLite
connection gets (consent and audit through SQLAlchemy, delivery and the segmenter's definitions
on plain sqlite3)."""

from __future__ import annotations

import fcntl
import os
import sqlite3
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command, context
from alembic.config import Config
from sqlalchemy import Connection, Engine, MetaData, create_engine, event

_DRIVERLESS = ("postgresql://", "postgres://")
_SQLITE_FILE = "sqlite:///"
# How long a connection waits for another process's write lock before it gives up.
SQLITE_BUSY_TIMEOUT_MS = 30_000
SQLITE_PRAGMAS = (
    f"busy_timeout={SQLITE_BUSY_TIMEOUT_MS}",  # first: switching to WAL may wait for a lock
    # Readers never wait for the writer, and a commit is one append to the log.
    "journal_mode=WAL",
    # FULL: a commit survives power loss, not only a crash of the process (an answered write
    # is on disk); a write that may be redone lowers it for its own transaction.
    "synchronous=FULL",
    # Deleted rows are overwritten, not just unlinked, so an erased id does not linger in free
    # pages (the log keeps older page versions until it is checkpointed and truncated).
    "secure_delete=ON",
)


def driver_url(url: str) -> str:
    """`postgresql://` and `postgres://` (the contract's form) mean psycopg 3, the driver installed."""
    for plain in _DRIVERLESS:
        if url.startswith(plain):
            return "postgresql+psycopg://" + url[len(plain) :]
    return url


def is_sqlite_file(url: str) -> bool:
    return url.startswith(_SQLITE_FILE)


def sqlite_file(url: str) -> str:
    """The file of a `sqlite:///` URL (a `db_url` of the settings)."""
    if not is_sqlite_file(url):
        raise ValueError("expected a sqlite:/// URL")
    return url.removeprefix(_SQLITE_FILE)


def configure_sqlite(connection: sqlite3.Connection, _record: Any = None) -> None:
    """Set up a new SQLite connection the one way every store does: autocommit, so the store (or
    SQLAlchemy's "begin" event) issues BEGIN itself and writers can take the lock first, and
    `SQLITE_PRAGMAS`. Also a SQLAlchemy "connect" listener (`_record` is its connection record)."""
    connection.isolation_level = None
    cursor = connection.cursor()
    for pragma in SQLITE_PRAGMAS:
        cursor.execute(f"PRAGMA {pragma}")
    cursor.close()


def make_store_engine(
    url: str,
    begin: Callable[[Connection], None],
    *,
    pool: Mapping[str, int] | None = None,
    postgresql_connect_args: Mapping[str, Any] | None = None,
) -> Engine:
    """The engine of a service's SQL store at `url` (its `db_url`): PostgreSQL through psycopg 3,
    connections checked before use; or SQLite, its directory created, every connection set up by
    `configure_sqlite` and every transaction begun by `begin` (the store's own BEGIN: deferred
    for readers, IMMEDIATE for writers). `pool` sizes the pool of either."""
    url = driver_url(url)
    if not url.startswith("sqlite"):
        connect_args = dict(postgresql_connect_args or {})
        return create_engine(url, pool_pre_ping=True, connect_args=connect_args, **(pool or {}))
    if is_sqlite_file(url):
        Path(sqlite_file(url)).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"check_same_thread": False}, **(pool or {}))
    event.listen(engine, "connect", configure_sqlite)
    event.listen(engine, "begin", begin)
    return engine


def upgrade_schema(connection: Connection, migrations: Path) -> None:
    """Upgrade the store on `connection`, inside its transaction (so under whatever lock the
    caller took), to the newest revision of the alembic scripts in `migrations`: idempotent,
    never drops data. Every store's start runs it; the scripts' `env.py` is `migration_env`."""
    config = Config()
    config.set_main_option("script_location", str(migrations))
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


def upgrade_sqlite_file(path: str | Path, migrations: Path) -> None:
    """`upgrade_schema` for a store that queries through plain sqlite3 (delivery's, the
    segmenter's definitions): on an engine of its own, disposed once the upgrade committed.

    Processes starting together on one file (two segmenter workers on one DATA_DIR) upgrade it
    one after the other under an exclusive lock on `<file>.lock`, and the later ones find it at
    head. SQLite's own lock is not enough: two read "no schema" and the second failed creating a
    table the first had made, and a brand-new file's switch to WAL fails at once, busy timeout or
    not, while another connection holds it (both seen in test_database.py)."""
    with _exclusive(Path(f"{path}.lock")):
        engine = make_store_engine(f"sqlite:///{path}", _begin_immediate)
        try:
            with engine.begin() as connection:
                upgrade_schema(connection, migrations)
        finally:
            engine.dispose()


class StoreInUseError(RuntimeError):
    """Another process holds a store that only one process may use."""


def hold_for_this_process(path: str) -> int:
    """Take the exclusive lock of `<path>.owner` for as long as the returned descriptor stays
    open (the kernel drops it when the process ends, however it ends), or raise StoreInUseError
    at once: a second process on the file would not wait its turn, it would run beside."""
    descriptor = os.open(f"{path}.owner", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(descriptor)
        raise StoreInUseError(f"{path} is in use by another process (it holds {path}.owner)") from None
    return descriptor


@contextmanager
def _exclusive(lock_file: Path) -> Iterator[None]:
    descriptor = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)  # released when the descriptor closes
        yield
    finally:
        os.close(descriptor)


def _begin_immediate(connection: Connection) -> None:
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def migration_env(metadata: MetaData | None = None) -> None:
    """The whole of every service's `migrations/env.py`: run the scripts on the connection
    `upgrade_schema` handed over (`render_as_batch`: SQLite alters a table by copying it)."""
    connection = context.config.attributes.get("connection")
    if connection is None:
        raise RuntimeError("migrations run through shared.database.upgrade_schema, at the service's start")
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()
