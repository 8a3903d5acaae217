"""SqliteDefinitionStore: the segmenter's own copy of segment definitions under DATA_DIR.

The embedded broker keeps topics in memory, so this store is what survives a restart; the
service republishes from it what `segment.definitions` lacks. Deleted segments stay as rows
marked deleted, so their version keeps counting up if the id is used again.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from services.segmenter.domain.segments import StoredDefinition
from shared.database import configure_sqlite, upgrade_sqlite_file
from shared.events import SegmentDefinition

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


class SqliteDefinitionStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        upgrade_sqlite_file(path, MIGRATIONS)  # services/segmenter/migrations

    def _connect(self) -> sqlite3.Connection:
        connection = sqlite3.connect(self.path)
        configure_sqlite(connection)
        return connection

    async def all(self) -> list[StoredDefinition]:
        return await asyncio.to_thread(self._all)

    async def upsert(self, definition: SegmentDefinition) -> None:
        await asyncio.to_thread(self._write, definition.segment_id, definition.version, definition)

    async def mark_deleted(self, segment_id: str, version: int) -> None:
        await asyncio.to_thread(self._write, segment_id, version, None)

    def _all(self) -> list[StoredDefinition]:
        with self._connect() as db:
            rows = db.execute(
                "SELECT segment_id, version, body FROM definitions ORDER BY segment_id"
            ).fetchall()
        return [
            StoredDefinition(sid, version, SegmentDefinition.model_validate_json(body) if body else None)
            for sid, version, body in rows
        ]

    def _write(self, segment_id: str, version: int, definition: SegmentDefinition | None) -> None:
        body = definition.model_dump_json() if definition is not None else None
        with self._connect() as db:
            # Only move forward: a replayed older version from the topic never overwrites a newer one.
            db.execute(
                "INSERT INTO definitions (segment_id, version, deleted, body) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(segment_id) DO UPDATE SET version = excluded.version, "
                "deleted = excluded.deleted, body = excluded.body "
                "WHERE excluded.version >= definitions.version",
                (segment_id, version, int(definition is None), body),
            )
