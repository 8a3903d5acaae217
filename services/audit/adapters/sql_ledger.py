"""`SqlLedgerStore`: appends to and reads the ledger through SQLAlchemy; there is no update path."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime

from sqlalchemy import Engine, select

from services.audit.adapters.sql_append import AppendBatch, known_definition, read_head
from services.audit.adapters.sql_database import lock_ledger, writer_connection
from services.audit.adapters.sql_merkle import backfill_nodes, read_subtrees, store_nodes
from services.audit.adapters.sql_rows import RUN_SIZE, read_runs
from services.audit.adapters.sql_tables import definitions, records, underived_columns
from services.audit.adapters.verify_workers import WorkerStore, check_ranges
from services.audit.domain.ledger import AppendResult, Run, SealedRecord, format_at
from services.audit.domain.merkle import Part
from services.audit.domain.ranges import RangeCheck, SeqRange, check_range
from services.audit.domain.sources import KnownDefinition, SourceItem
from services.audit.domain.verify import Progress
from shared.events import utcnow

_COLUMNS = (
    records.c.seq,
    records.c.at,
    records.c.kind,
    records.c.subject,
    records.c.event_id,
    records.c.payload,
    records.c.prev_hash,
    records.c.hash,
)


class SqlLedgerStore:
    """The ledger in one SQL table; each append is one transaction holding the writer lock."""

    def __init__(self, engine: Engine, run_size: int = RUN_SIZE) -> None:
        self.engine = engine
        self.run_size = run_size  # records a verifying read

    def append(self, items: Sequence[SourceItem], now: datetime | None = None) -> AppendResult:
        """Append one record per new source item, with the Merkle nodes they complete; items already
        recorded are skipped."""
        at = format_at(now or utcnow())
        with writer_connection(self.engine) as connection, connection.begin():
            lock_ledger(connection)
            batch = AppendBatch(connection, at)
            length = batch.length
            backfill_nodes(connection, length)  # a no-op unless the ledger predates stored nodes
            result = batch.append(items)
            store_nodes(connection, length, [bytes.fromhex(record.hash) for record in result.appended])
            return result

    def backfill_nodes(self) -> int:
        """Store the Merkle nodes of records appended before nodes were stored; how many were written."""
        with writer_connection(self.engine) as connection, connection.begin():
            lock_ledger(connection)
            return backfill_nodes(connection, read_head(connection)[0])

    def subtrees(self, needed: Iterable[Part]) -> dict[Part, bytes]:
        """The hashes of the perfect subtrees a proof needs, O(log n) rows read."""
        with self.engine.connect() as connection:
            return read_subtrees(connection, needed)

    def head(self) -> tuple[int, str]:
        """(length, hash of the last record) — GENESIS for an empty ledger."""
        with self.engine.connect() as connection:
            return read_head(connection)

    def find(
        self, subject: str | None, kind: str | None, after_seq: int, limit: int, event_id: str | None = None
    ) -> list[SealedRecord]:
        query = select(*_COLUMNS).where(records.c.seq > after_seq).order_by(records.c.seq).limit(limit)
        if event_id is not None:  # the unique index on event_id: one row at most, however long the trail
            query = query.where(records.c.event_id == event_id)
        if subject is not None:
            query = query.where(records.c.subject == subject)
        if kind is not None:
            query = query.where(records.c.kind == kind)
        with self.engine.connect() as connection:
            return [SealedRecord(*row) for row in connection.execute(query)]

    def runs(self, start: int = 0, stop: int | None = None) -> Iterator[Run]:
        """The records of seq in [start, stop) in seq order, in runs, without loading the ledger."""
        with self.engine.connect() as connection:
            driver = connection.connection.driver_connection
            yield from read_runs(driver, connection.dialect.name, start, stop, self.run_size)

    def check_ranges(self, ranges: list[SeqRange], progress: Progress | None) -> list[RangeCheck]:
        """Each range checked by a worker process of its own that reads the store itself (an
        in-memory SQLite database, which no other process can open, one range after the other)."""
        url = self.engine.url
        if url.get_backend_name() == "postgresql":
            address = url.set(drivername="postgresql").render_as_string(hide_password=False)
            return check_ranges(WorkerStore("postgresql", address, self.run_size), ranges, progress)
        if url.database and url.database != ":memory:":
            return check_ranges(WorkerStore("sqlite", url.database, self.run_size), ranges, progress)
        return [check_range(span, self.runs(max(span.start - 1, 0), span.stop), progress) for span in ranges]

    def underived_columns(self) -> list[str]:
        """The ledger's columns that are no longer generated from `body` as migration 0002 made
        them (someone altered the table): their values would escape verification."""
        with self.engine.connect() as connection:
            return underived_columns(connection)

    def leaf_hashes(self, start: int, stop: int, chunk: int = 50_000) -> Iterator[list[bytes]]:
        """The record hashes of seq in [start, stop) as bytes (the Merkle leaves), in chunks."""
        query = select(records.c.hash).where(records.c.seq >= start, records.c.seq < stop)
        options = {"stream_results": True, "yield_per": chunk}
        with self.engine.connect().execution_options(**options) as connection:
            for part in connection.execute(query.order_by(records.c.seq)).partitions():
                yield [bytes.fromhex(h) for (h,) in part]

    def known_definitions(self) -> list[KnownDefinition]:
        with self.engine.connect() as connection:
            return [known_definition(row) for row in connection.execute(select(definitions))]
