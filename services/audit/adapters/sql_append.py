"""`AppendBatch`: one append transaction — skip what is recorded, seal the rest onto the chain."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, delete, insert, select

from services.audit.adapters.sql_tables import definitions, records
from services.audit.domain.ledger import GENESIS, AppendResult, LedgerEntry, seal_with_body
from services.audit.domain.sources import DefinitionChange, KnownDefinition, SourceItem, resolve_definition


class AppendBatch:
    """One append transaction: skips what is recorded, seals the rest onto the chain."""

    def __init__(self, connection: Connection, at: str) -> None:
        self.connection, self.at = connection, at
        self.length, self.head = read_head(connection)
        self.result = AppendResult()
        self.rows: list[dict[str, Any]] = []  # what is written: seq, body, hash (the rest is derived)

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
        record, body = seal_with_body(entry, self.length, self.at, self.head)
        self.result.appended.append(record)
        self.rows.append({"seq": record.seq, "body": body.decode(), "hash": record.hash})
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
        return {row.segment_id: known_definition(row) for row in self.connection.execute(query)}

    def _write(self, updated: dict[str, KnownDefinition]) -> None:
        if self.rows:
            self.connection.execute(insert(records), self.rows)
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


def read_head(connection: Connection) -> tuple[int, str]:
    last = connection.execute(select(records.c.seq, records.c.hash).order_by(records.c.seq.desc()).limit(1))
    row = last.first()
    return (0, GENESIS) if row is None else (row.seq + 1, row.hash)


def known_definition(row: Any) -> KnownDefinition:
    return KnownDefinition(row.segment_id, row.event_id, json.loads(row.payload), row.deleted)
