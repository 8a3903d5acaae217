"""The definition feed's reader is stopped however its run ends (the segmenter logged
`Unclosed AIOKafkaConsumer` at every stop: the feed's consumer was cancelled, never stopped)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import cast

from aiokafka.structs import ConsumerRecord

from services.segmenter.adapters.kafka_compacted import KafkaCompactedReader
from services.segmenter.definition_feed import DefinitionFeed
from services.segmenter.domain.segments import SegmentRegistry
from services.segmenter.handlers import DefinitionService
from tests.unit.segmenter.memory_store import (
    MemoryDefinitionStore,
    RecordingProducer,
    RecordingPublisher,
    dead_letters,
)


class FollowingReader:
    """A compacted topic with nothing on it, followed until cancelled."""

    def __init__(self) -> None:
        self.started = self.stopped = 0

    async def start(self) -> None:
        self.started += 1

    async def stop(self) -> None:
        self.stopped += 1

    async def read_to_end(self) -> list[ConsumerRecord]:
        return []

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
