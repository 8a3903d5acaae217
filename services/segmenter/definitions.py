"""Segment definitions: saved by the API, spread through `segment.definitions`, applied by every worker."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from services.segmenter.adapters.kafka_publisher import KafkaMembershipPublisher
from services.segmenter.adapters.sqlite_definitions import SqliteDefinitionStore, StoredDefinition
from services.segmenter.domain.segments import Segment, SegmentRegistry
from services.segmenter.rules import RuleError
from shared.events import SegmentDefinition

log = logging.getLogger(__name__)
# Marks a segment for re-evaluation (True: deleted, to be emptied); returns at once.
MarkChanged = Callable[[str, bool], None]


class DefinitionService:
    def __init__(
        self,
        registry: SegmentRegistry,
        store: SqliteDefinitionStore,
        publisher: KafkaMembershipPublisher,
        on_change: MarkChanged,
    ) -> None:
        self.registry = registry
        self.store = store
        self.publisher = publisher
        # The customers are re-evaluated in the background (reevaluation.py), never in a request.
        self.on_change = on_change
        self.versions: dict[str, int] = {}
        self.loaded = asyncio.Event()

    async def load_store(self) -> list[StoredDefinition]:
        stored = await self.store.all()
        for row in stored:
            self.versions[row.segment_id] = max(self.versions.get(row.segment_id, 0), row.version)
        return stored

    def next_version(self, segment_id: str) -> int:
        return self.versions.get(segment_id, 0) + 1

    async def save(self, definition: SegmentDefinition) -> SegmentDefinition:
        """API write: own store first (it survives the broker), then the topic, then this worker."""
        await self.store.upsert(definition)
        await self.publisher.publish_definition(definition.segment_id, definition)
        await self.apply(definition.segment_id, definition)
        return definition

    async def delete(self, segment_id: str) -> bool:
        current = self.registry.get(segment_id)
        if current is None:
            return False
        version = self.next_version(segment_id)
        await self.store.mark_deleted(segment_id, version)
        await self.publisher.publish_definition(segment_id, None)
        await self.apply(segment_id, None, version)
        return True

    async def apply(self, segment_id: str, definition: SegmentDefinition | None, version: int = 0) -> None:
        """Install a definition (or a deletion) from the topic or the API; repeats are no-ops."""
        current = self.registry.get(segment_id)
        if definition is None:
            if current is None:
                return
            self.registry.remove(segment_id)
            self.versions[segment_id] = max(
                self.versions.get(segment_id, 0), version or current.definition.version
            )
            self.on_change(segment_id, True)
            return
        if current is not None and current.definition.event_id == definition.event_id:
            return
        if current is not None and current.definition.version > definition.version:
            return  # an older definition replayed from the topic
        try:
            segment = Segment.from_definition(definition)
        except RuleError as exc:
            log.error(
                "ignored a definition whose rule does not compile",
                extra={"segment": segment_id, "error": str(exc)},
            )
            return
        self.registry.put(segment)
        self.versions[segment_id] = max(self.versions.get(segment_id, 0), definition.version)
        self.on_change(segment_id, False)
