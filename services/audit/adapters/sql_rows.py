"""The records verification reads, straight from a driver connection (sqlite3 or psycopg), no SQLAlchemy.

Standard library only, so a verifying worker process starts in a fraction of the time that
importing the service's SQL stack takes.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from typing import Any

from services.audit.domain.ledger import Row, Run, runs

# Records a read. Small, so that a run's records are still in the CPU's caches when they are
# hashed: reads of 20,000 cost some 15% more CPU a record than reads of 512 (docs/audit.md).
RUN_SIZE = 512


def read_runs(driver: Any, dialect: str, start: int, stop: int | None, size: int = RUN_SIZE) -> Iterator[Run]:
    """The records of seq in [start, stop) in seq order, as runs of up to `size`, without loading
    the ledger. Where seq is a unique key, a seq range that holds as many records as it has seqs
    holds each of them once, so it is read without its seqs; from the first range that holds fewer
    (the ledger's end, or a record missing) on, the records are read with their seqs."""
    if _seq_is_unique(driver, dialect):
        start = yield from _full_ranges(driver, dialect, start, stop, size)
    yield from runs(_rows(driver, dialect, start, stop, size), size)


def _full_ranges(
    driver: Any, dialect: str, start: int, stop: int | None, size: int
) -> Generator[Run, None, int]:
    """Runs of the seq ranges [start, start + size), ... while each holds all its seqs; returns
    the start of the first range that does not."""
    body, mark = _body_and_mark(dialect)
    cursor = driver.cursor(binary=True) if dialect == "postgresql" else driver.cursor()
    query = f"SELECT {body}, hash FROM audit_records WHERE seq >= {mark} AND seq < {mark} ORDER BY seq"
    try:
        while (wanted := size if stop is None else min(size, stop - start)) > 0:
            cursor.execute(query, (start, start + wanted))
            records = cursor.fetchall()
            if len(records) < wanted:
                break
            yield Run(start, records)
            start += wanted
    finally:
        cursor.close()
    return start


def _rows(driver: Any, dialect: str, start: int, stop: int | None, size: int) -> Iterator[Row]:
    """(seq, stored bytes, hash) of seq in [start, stop) in seq order. Row tuples from the
    driver's cursor (server-side on PostgreSQL): SQLAlchemy's row objects cost more than hashing
    the record."""
    body, mark = _body_and_mark(dialect)
    cursor = driver.cursor(name="audit_rows", binary=True) if dialect == "postgresql" else driver.cursor()
    bound, args = ("", (start,)) if stop is None else (f" AND seq < {mark}", (start, stop))
    cursor.execute(
        f"SELECT seq, {body}, hash FROM audit_records WHERE seq >= {mark}{bound} ORDER BY seq", args
    )
    try:
        while part := cursor.fetchmany(size):
            yield from part
    finally:
        cursor.close()


def _body_and_mark(dialect: str) -> tuple[str, str]:
    """How the query selects the stored bytes, and the driver's parameter mark. Binary on
    PostgreSQL: the body arrives as its bytes, not as hex text to decode (3x the CPU)."""
    return ("convert_to(body, 'UTF8')", "%s") if dialect == "postgresql" else ("CAST(body AS BLOB)", "?")


def _seq_is_unique(driver: Any, dialect: str) -> bool:
    """Whether the ledger's seq is still its primary key (as created), so no seq is there twice.
    Checked each time: whoever can edit the rows behind the service's back can drop a key too."""
    if dialect == "postgresql":
        with driver.cursor() as cursor:
            cursor.execute(
                "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid "
                "AND a.attnum = ANY(i.indkey) WHERE i.indrelid = 'audit_records'::regclass "
                "AND i.indisprimary"
            )
            return [name for (name,) in cursor.fetchall()] == ["seq"]
    columns = driver.execute("PRAGMA table_info(audit_records)").fetchall()
    return [column[1] for column in columns if column[5]] == ["seq"]
