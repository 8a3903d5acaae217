"""KafkaPartitionReader: some partitions of a topic, read from their beginning outside any group.

The rebuild of a worker's Redis state reads only the partitions it owns (of the customer
topics, co-partitioned): `consent.state`, `erasure.requests`, `segment.membership.state` to
their end, and `customer.events` up to the positions the event follower has reached.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable

from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord

from services.segmenter.adapters.kafka_compacted import KafkaCompactedReader
from shared.kafka import make_consumer
from shared.settings import ServiceSettings


class KafkaPartitionReader(KafkaCompactedReader):
    def __init__(
        self, settings: ServiceSettings, topic: str, client_id: str, partitions: Iterable[int]
    ) -> None:
        super().__init__(settings, topic, client_id)
        self.partitions = sorted(set(partitions))

    async def start(self) -> None:
        consumer = make_consumer(self.settings, group_id=None, client_id=self.client_id)
        await consumer.start()
        consumer.assign([TopicPartition(self.topic, p) for p in self.partitions])
        await consumer.seek_to_beginning()
        self.consumer = consumer

    async def end_offsets(self) -> dict[int, int]:
        assert self.consumer is not None
        ends = await self.consumer.end_offsets(list(self.consumer.assignment()))
        return {tp.partition: offset for tp, offset in ends.items()}

    async def batches_until(
        self, stops: dict[int, int], size: int = 500
    ) -> AsyncIterator[list[ConsumerRecord]]:
        """Batches of records, oldest first per partition, until each partition reaches its stop.

        A batch may run past a stop (the broker delivers whole record batches): the caller's
        writes are idempotent, so records read twice (here and by the stream) count once.
        """
        assert self.consumer is not None
        while await self._short_of(stops):
            fetched = await self.consumer.getmany(timeout_ms=200, max_records=size)
            records = [r for batch in fetched.values() for r in batch]
            if records:
                yield records

    async def _short_of(self, stops: dict[int, int]) -> bool:
        assert self.consumer is not None
        for partition, stop in stops.items():
            if await self.consumer.position(TopicPartition(self.topic, partition)) < stop:
                return True
        return False
