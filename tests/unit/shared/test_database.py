"""Every SQLite store opens its connections the one way `shared.database.configure_sqlite` does."""

from __future__ import annotations

import multiprocessing
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from services.audit.adapters.sql_database import make_engine as audit_engine
from services.consent.adapters.sql_engine import make_engine as consent_engine
from services.delivery.adapters.sqlite_store import MIGRATIONS as DELIVERY_MIGRATIONS
from services.delivery.adapters.sqlite_store import open_database
from services.segmenter.adapters.sqlite_definitions import MIGRATIONS as SEGMENTER_MIGRATIONS
from services.segmenter.adapters.sqlite_definitions import SqliteDefinitionStore
from shared.database import SQLITE_BUSY_TIMEOUT_MS, sqlite_file, upgrade_sqlite_file

WORKERS = 4
ROUNDS = 10
EXPECTED = {
    "journal_mode": "wal",
    "synchronous": 2,
    "busy_timeout": SQLITE_BUSY_TIMEOUT_MS,
    "secure_delete": 1,
}


@contextmanager
def through_engine(make: Callable[[str], Any], path: Path) -> Iterator[Any]:
    engine = make(f"sqlite:///{path}")
    connection = engine.raw_connection()
    try:
        yield connection
    finally:
        connection.close()
        engine.dispose()


@contextmanager
def delivery(path: Path) -> Iterator[sqlite3.Connection]:
    connection = open_database(str(path))
    try:
        yield connection
    finally:
        connection.close()


@contextmanager
def segmenter(path: Path) -> Iterator[sqlite3.Connection]:
    connection = SqliteDefinitionStore(path)._connect()
    try:
        yield connection
    finally:
        connection.close()


STORES: dict[str, Callable[[Path], Any]] = {
    "consent": lambda path: through_engine(consent_engine, path),
    "audit": lambda path: through_engine(audit_engine, path),
    "delivery": delivery,
    "segmenter": segmenter,
}


@pytest.mark.parametrize("store", STORES)
def test_every_sqlite_store_runs_wal_full_sync_a_busy_timeout_and_secure_delete(
    store: str, tmp_path: Path
) -> None:
    with STORES[store](tmp_path / f"{store}.db") as connection:
        found = {name: connection.execute(f"PRAGMA {name}").fetchone()[0] for name in EXPECTED}
        # Autocommit: the store, or SQLAlchemy's "begin" event, issues BEGIN itself.
        assert connection.isolation_level is None
    assert found == EXPECTED


def test_a_db_url_names_its_file() -> None:
    assert sqlite_file("sqlite:////data/delivery.db") == "/data/delivery.db"
    with pytest.raises(ValueError):
        sqlite_file("postgresql://db/consent")


async def test_the_definition_store_adopts_a_file_made_by_its_old_ddl(tmp_path: Path) -> None:
    path = tmp_path / "segments.db"
    with sqlite3.connect(path) as old:  # the store's own DDL, before it had migrations
        old.execute(
            "CREATE TABLE definitions (segment_id TEXT PRIMARY KEY, version INTEGER NOT NULL,"
            " deleted INTEGER NOT NULL DEFAULT 0, body TEXT)"
        )
        old.execute("INSERT INTO definitions VALUES ('gone', 3, 1, NULL)")
    old.close()
    store = SqliteDefinitionStore(path)
    assert [(d.segment_id, d.version, d.definition) for d in await store.all()] == [("gone", 3, None)]
    await store.mark_deleted("gone", 4)
    assert [d.version for d in await store.all()] == [4]
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT version_num FROM alembic_version").fetchall() == [("0001",)]


def _upgrade_when_all_are_ready(path: Path, migrations: Path, ready: Any) -> None:
    ready.wait()
    upgrade_sqlite_file(path, migrations)


@pytest.mark.parametrize(
    "migrations", [DELIVERY_MIGRATIONS, SEGMENTER_MIGRATIONS], ids=["delivery", "segmenter"]
)
def test_processes_starting_at_once_on_one_file_each_find_it_migrated(
    tmp_path: Path, migrations: Path
) -> None:
    # Two segmenter workers (or a delivery restarted beside its predecessor) may open one
    # DATA_DIR's file together: each runs the migrations at start, and neither may fail on the
    # other's half-made schema or its write lock. Processes, as in production (alembic's
    # `context` is one per process, so threads would share it).
    forked = multiprocessing.get_context("fork")
    for round_ in range(ROUNDS):
        path = tmp_path / f"store-{round_}.db"
        ready = forked.Barrier(WORKERS)
        workers = [
            forked.Process(target=_upgrade_when_all_are_ready, args=(path, migrations, ready))
            for _ in range(WORKERS)
        ]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        assert [worker.exitcode for worker in workers] == [0] * WORKERS
        with sqlite3.connect(path) as connection:
            versions = connection.execute("SELECT version_num FROM alembic_version").fetchall()
        assert len(versions) == 1
