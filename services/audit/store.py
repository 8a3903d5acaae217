"""`SqlLedgerStore`: appends to and reads the ledger through SQLAlchemy; there is no update path."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, delete, insert, select

from services.audit.database import lock_ledger, writer_connection
from services.audit.ledger import GENESIS, LedgerEntry, Row, SealedRecord, format_at, seal
from services.audit.sources import DefinitionChange, KnownDefinition, resolve_definition
from services.audit.tables import definitions, records
from shared.events import utcnow

SourceItem = LedgerEntry | DefinitionChange
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


@dataclass
class AppendResult:
    appended: list[SealedRecord] = field(default_factory=list)
    duplicates: int = 0


class SqlLedgerStore:
    """The ledger in one SQL table; each append is one transaction holding the writer lock."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def append(self, items: Sequence[SourceItem], now: datetime | None = None) -> AppendResult:
        """Append one record per new source item; items already recorded are skipped."""
        at = format_at(now or utcnow())
        with writer_connection(self.engine) as connection, connection.begin():
            lock_ledger(connection)
            return _Batch(connection, at).append(items)

    def head(self) -> tuple[int, str]:
        """(length, hash of the last record) — GENESIS for an empty ledger."""
        with self.engine.connect() as connection:
            return _head(connection)

    def find(self, subject: str | None, kind: str | None, after_seq: int, limit: int) -> list[SealedRecord]:
        query = select(*_COLUMNS).where(records.c.seq > after_seq).order_by(records.c.seq).limit(limit)
        if subject is not None:
            query = query.where(records.c.subject == subject)
        if kind is not None:
            query = query.where(records.c.kind == kind)
        with self.engine.connect() as connection:
            return [SealedRecord(*row) for row in connection.execute(query)]

    def rows(self, start: int = 0, chunk: int = 20_000) -> Iterator[list[Row]]:
        """Records from `start` in seq order, in chunks, without loading the ledger.

        Straight from the driver's cursor (server-side on PostgreSQL): SQLAlchemy's row
        objects cost more than hashing the record, and verification is meant to be fast.
        """
        columns = ", ".join(column.name for column in _COLUMNS)
        with self.engine.connect() as connection:
            raw: Any = connection.connection.driver_connection
            postgres = connection.dialect.name == "postgresql"
            cursor = raw.cursor(name="audit_rows") if postgres else raw.cursor()
            mark = "%s" if postgres else "?"
            cursor.execute(f"SELECT {columns} FROM audit_records WHERE seq >= {mark} ORDER BY seq", (start,))
            try:
                while part := cursor.fetchmany(chunk):
                    yield part
            finally:
                cursor.close()

    def leaf_hashes(self, start: int, stop: int, chunk: int = 50_000) -> Iterator[bytes]:
        """The record hashes of seq in [start, stop) as bytes: the Merkle leaves."""
        query = select(records.c.hash).where(records.c.seq >= start, records.c.seq < stop)
        options = {"stream_results": True, "yield_per": chunk}
        with self.engine.connect().execution_options(**options) as connection:
            for part in connection.execute(query.order_by(records.c.seq)).partitions():
                yield from (bytes.fromhex(h) for (h,) in part)

    def known_definitions(self) -> list[KnownDefinition]:
        with self.engine.connect() as connection:
            return [_known(row) for row in connection.execute(select(definitions))]


class _Batch:
    """One append transaction: skips what is recorded, seals the rest onto the chain."""

    def __init__(self, connection: Connection, at: str) -> None:
        self.connection, self.at = connection, at
        self.length, self.head = _head(connection)
        self.result = AppendResult()

    def append(self, items: Sequence[SourceItem]) -> AppendResult:
        entries = [item for item in items if isinstance(item, LedgerEntry)]
        changes = [item for item in items if isinstance(item, DefinitionChange)]
        seen = self._recorded({entry.event_id for entry in entries})
        known = self._known({change.segment_id for change in changes})
        updated: dict[str, KnownDefinition] = {}
        for item in items:
            entry, state = self._resolve(item, known)
            if entry is None or entry.event_id in seen:
                self.result.duplicates += 1
                continue
            self._seal(entry)
            seen.add(entry.event_id)
            if isinstance(item, DefinitionChange) and state is not None:
                known[item.segment_id] = updated[item.segment_id] = state
        self._write(updated)
        return self.result

    @staticmethod
    def _resolve(
        item: SourceItem, known: dict[str, KnownDefinition]
    ) -> tuple[LedgerEntry | None, KnownDefinition | None]:
        if isinstance(item, LedgerEntry):
            return item, None
        return resolve_definition(item, known.get(item.segment_id))

    def _seal(self, entry: LedgerEntry) -> None:
        record = seal(entry, self.length, self.at, self.head)
        self.result.appended.append(record)
        self.length, self.head = self.length + 1, record.hash

    def _recorded(self, event_ids: set[str]) -> set[str]:
        found: set[str] = set()
        ids = sorted(event_ids)
        for i in range(0, len(ids), 500):
            query = select(records.c.event_id).where(records.c.event_id.in_(ids[i : i + 500]))
            found.update(self.connection.execute(query).scalars())
        return found

    def _known(self, segment_ids: set[str]) -> dict[str, KnownDefinition]:
        if not segment_ids:
            return {}
        query = select(definitions).where(definitions.c.segment_id.in_(sorted(segment_ids)))
        return {row.segment_id: _known(row) for row in self.connection.execute(query)}

    def _write(self, updated: dict[str, KnownDefinition]) -> None:
        if self.result.appended:
            rows = [vars(record) for record in self.result.appended]
            self.connection.execute(insert(records), rows)
        if updated:
            self.connection.execute(delete(definitions).where(definitions.c.segment_id.in_(sorted(updated))))
            self.connection.execute(insert(definitions), [_definition_row(s) for s in updated.values()])


def _definition_row(state: KnownDefinition) -> dict[str, Any]:
    return {
        "segment_id": state.segment_id,
        "event_id": state.event_id,
        "payload": json.dumps(state.payload, sort_keys=True),
        "deleted": state.deleted,
    }


def _head(connection: Connection) -> tuple[int, str]:
    last = connection.execute(select(records.c.seq, records.c.hash).order_by(records.c.seq.desc()).limit(1))
    row = last.first()
    return (0, GENESIS) if row is None else (row.seq + 1, row.hash)


def _known(row: Any) -> KnownDefinition:
    return KnownDefinition(row.segment_id, row.event_id, json.loads(row.payload), row.deleted)
