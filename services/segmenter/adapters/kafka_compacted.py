"""KafkaCompactedReader: reads a compacted topic from the start, outside any consumer group.

Every worker needs all of `segment.definitions` (and, at start, all of `consent.state`), so
these are read by a group-less consumer that assigns itself every partition. The broker does
not compact (docs/broker.md), so the reader keeps the last value per key itself.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import ConsumerRecord

from shared.kafka import make_consumer
from shared.settings import ServiceSettings


class KafkaCompactedReader:
    def __init__(self, settings: ServiceSettings, topic: str, client_id: str) -> None:
        self.settings = settings
        self.topic = topic
        self.client_id = client_id
        self.consumer: AIOKafkaConsumer | None = None

    async def start(self) -> None:
        consumer = make_consumer(self.settings, group_id=None, client_id=self.client_id)
        await consumer.start()
        await consumer.topics()  # loads metadata for every topic, ours included
        partitions = consumer.partitions_for_topic(self.topic) or set()
        consumer.assign([TopicPartition(self.topic, p) for p in sorted(partitions)])
        await consumer.seek_to_beginning()
        self.consumer = consumer

    async def stop(self) -> None:
        if self.consumer is not None:
            await self.consumer.stop()

    async def read_once(self) -> list[ConsumerRecord]:
        """One pass: start, every record up to the end offsets seen now (`read_to_end`), stop."""
        await self.start()
        try:
            return await self.read_to_end()
        finally:
            await self.stop()

    async def read_to_end(self) -> list[ConsumerRecord]:
        """Every record up to the end offsets seen now (a whole batch past them is read too)."""
        assert self.consumer is not None
        assigned = list(self.consumer.assignment())
        ends = await self.consumer.end_offsets(assigned)
        records: list[ConsumerRecord] = []
        while await self._behind(assigned, ends):
            batches = await self.consumer.getmany(timeout_ms=200)
            for batch in batches.values():
                records.extend(batch)
        return records

    async def _behind(self, assigned: list[TopicPartition], ends: dict[TopicPartition, int]) -> bool:
        assert self.consumer is not None
        for tp in assigned:
            if await self.consumer.position(tp) < ends[tp]:
                return True
        return False

    async def follow(self) -> AsyncIterator[ConsumerRecord]:
        assert self.consumer is not None
        async for record in self.consumer:
            yield record
