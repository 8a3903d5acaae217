"""The definition feed: its reader is stopped however its run ends (the segmenter logged
`Unclosed AIOKafkaConsumer` at every stop: the feed's consumer was cancelled, never stopped),
and a tombstone's version comes from its header."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import cast

from aiokafka.structs import ConsumerRecord

from services.segmenter.adapters.kafka_compacted import KafkaCompactedReader
from services.segmenter.definition_feed import DefinitionFeed
from services.segmenter.domain.segments import SegmentRegistry
from services.segmenter.handlers import DefinitionService
from shared.events import DEFINITION_VERSION_HEADER, SegmentDefinition, utcnow
from tests.unit.segmenter.memory_store import (
    MemoryDefinitionStore,
    RecordingProducer,
    RecordingPublisher,
    dead_letters,
)


class FollowingReader:
    """A compacted topic holding `records`, followed until cancelled."""

    def __init__(self, records: list[ConsumerRecord] | None = None) -> None:
        self.started = self.stopped = 0
        self.records = records or []

    async def start(self) -> None:
        self.started += 1

    async def stop(self) -> None:
        self.stopped += 1

    async def read_to_end(self) -> list[ConsumerRecord]:
        return self.records

    async def follow(self) -> AsyncIterator[ConsumerRecord]:
        await asyncio.Event().wait()  # no record ever comes
        yield  # pragma: no cover - makes this an async generator


async def test_the_reader_is_stopped_when_the_feed_is_cancelled() -> None:
    reader = FollowingReader()
    service = DefinitionService(
        SegmentRegistry(), MemoryDefinitionStore(), RecordingPublisher(), lambda _sid, _gone: None
    )
    feed = DefinitionFeed(cast(KafkaCompactedReader, reader), service, dead_letters(RecordingProducer()))
    task = asyncio.create_task(feed.run())
    await service.loaded.wait()  # following now
    assert reader.stopped == 0
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert (reader.started, reader.stopped) == (1, 1)


def tombstone(offset: int, segment_id: str, headers: list[tuple[str, bytes]]) -> ConsumerRecord:
    return ConsumerRecord(
        "segment.definitions", 0, offset, 0, 0, segment_id.encode(), None, None, len(segment_id), 0, headers
    )


async def test_a_stored_definition_newer_than_the_topics_tombstone_is_republished() -> None:
    """A crash between the store's write and the publish; and a malformed version is refused."""
    store, producer = MemoryDefinitionStore(), RecordingProducer()
    kept = SegmentDefinition(
        event_id="d-kept-3",
        segment_id="kept",
        name="kept",
        rule="event_count >= 1",
        version=3,
        updated_at=utcnow(),
    )
    # Put again (version 3) after a deletion at version 2, then a crash before it was published.
    await store.upsert(kept)
    reader = FollowingReader(
        [
            tombstone(0, "kept", [(DEFINITION_VERSION_HEADER, b"2")]),
            tombstone(1, "odd", [(DEFINITION_VERSION_HEADER, b"two")]),
        ]
    )
    registry, publisher = SegmentRegistry(), RecordingPublisher()
    service = DefinitionService(registry, store, publisher, lambda _sid, _gone: None)
    feed = DefinitionFeed(cast(KafkaCompactedReader, reader), service, dead_letters(producer))
    task = asyncio.create_task(feed.run())
    await service.loaded.wait()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    current = registry.get("kept")
    assert current is not None and current.definition == kept
    assert [(r.segment_id, r.version, r.definition) for r in await store.all()] == [("kept", 3, kept)]
    assert publisher.definitions == [("kept", kept, 3)]
    assert len(producer.sent) == 1 and b"version is not a positive number" in producer.sent[0][1]
