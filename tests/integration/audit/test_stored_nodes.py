"""Proofs from the stored Merkle nodes on real SQLite and PostgreSQL: right, O(log n) rows, backfilled."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import Engine, event, func, select, text

from services.audit.adapters.sql_database import create_schema
from services.audit.adapters.sql_ledger import SqlLedgerStore
from services.audit.adapters.sql_tables import merkle_nodes
from services.audit.domain import merkle
from services.audit.domain.ledger import LedgerEntry
from tests.unit.audit.rfc9162 import mth, verify_consistency, verify_inclusion

T = TypeVar("T")
LENGTH = 3000


def append(ledger: SqlLedgerStore, start: int, stop: int, batch: int = 777) -> None:
    """Records in batches that do not line up with the 16-leaf blocks."""
    entries = [LedgerEntry("consent_change", "ab" * 32, f"e-{i}", {"i": i}) for i in range(start, stop)]
    for at in range(0, len(entries), batch):
        ledger.append(entries[at : at + batch])


def leaves(ledger: SqlLedgerStore) -> list[bytes]:
    return [bytes.fromhex(stored) for run in ledger.runs() for _, stored in run.records]


def rows_read(engine: Engine, work: Callable[[], T]) -> tuple[T, int]:
    """What `work` returns, and how many rows its queries returned (each run once more to count)."""
    statements: list[tuple[str, Any]] = []

    def note(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            statements.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", note)
    try:
        result = work()
    finally:
        event.remove(engine, "before_cursor_execute", note)
    with engine.connect() as connection:
        return result, sum(len(connection.exec_driver_sql(s, p).fetchall()) for s, p in statements)


def bound(size: int) -> int:
    """O(log n): three nodes a level, plus the leaves of at most four partial 16-leaf blocks."""
    return 3 * size.bit_length() + 4 * merkle.BLOCK


def check_proofs(engine: Engine, ledger: SqlLedgerStore, length: int) -> None:
    hashes = leaves(ledger)
    assert len(hashes) == length
    for index, size in [(0, length), (length - 1, length), (1234, length), (2047, 2048), (16, 17), (0, 1)]:

        def include(index: int = index, size: int = size) -> tuple[bytes, list[bytes]]:
            return merkle.inclusion_proof(index, size, ledger.subtrees(merkle.inclusion_parts(index, size)))

        (root, path), rows = rows_read(engine, include)
        assert root == mth(hashes[:size]) and verify_inclusion(index, size, hashes[index], path, root)
        assert rows <= bound(size), (index, size, rows)
    for first, second in [(1, length), (1000, length), (2048, length), (length, length), (17, 33)]:

        def consist(first: int = first, second: int = second) -> tuple[list[bytes], bytes, bytes]:
            needed = merkle.consistency_parts(first, second)
            return merkle.consistency_proof(first, second, ledger.subtrees(needed))

        (path, old, new), rows = rows_read(engine, consist)
        assert (old, new) == (mth(hashes[:first]), mth(hashes[:second]))
        assert verify_consistency(first, second, old, new, path)
        assert rows <= bound(second), (first, second, rows)


def node_count(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(merkle_nodes)).scalar_one())


def test_proofs_come_from_stored_nodes_in_logarithmically_many_rows(engine: Engine) -> None:
    ledger = SqlLedgerStore(engine)
    append(ledger, 0, LENGTH)
    # One node per completed subtree of 16 leaves or more: about one per 8 records.
    assert node_count(engine) == sum(LENGTH >> level for level in range(merkle.STORED_LEVEL, 12))
    check_proofs(engine, ledger, LENGTH)
    # The count sees an O(n) read: hashing every leaf, as proofs did before nodes were stored.
    _, every_leaf = rows_read(engine, lambda: list(ledger.leaf_hashes(0, LENGTH)))
    assert every_leaf == LENGTH > bound(LENGTH)


def test_a_ledger_from_before_stored_nodes_is_backfilled(engine: Engine) -> None:
    ledger = SqlLedgerStore(engine)
    append(ledger, 0, LENGTH)
    stored = node_count(engine)
    with engine.begin() as connection:  # the ledger as an older version left it: no nodes table
        connection.execute(text("DROP TABLE audit_merkle_nodes"))
        connection.execute(text("DROP TABLE alembic_version"))  # nor migrations
    create_schema(engine)
    assert ledger.backfill_nodes() == stored and ledger.backfill_nodes() == 0
    check_proofs(engine, ledger, LENGTH)


def test_an_append_to_a_ledger_without_nodes_stores_them_first(engine: Engine) -> None:
    ledger = SqlLedgerStore(engine)
    append(ledger, 0, 1500)
    with engine.begin() as connection:
        connection.execute(text("DROP TABLE audit_merkle_nodes"))
        connection.execute(text("DROP TABLE alembic_version"))
    create_schema(engine)
    append(ledger, 1500, LENGTH)
    check_proofs(engine, ledger, LENGTH)
