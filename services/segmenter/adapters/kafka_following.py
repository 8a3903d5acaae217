"""AssignmentFollower: a plain aiokafka consumer of one topic that reads exactly the partitions
faust assigned this worker, under a group id of its own (the consent follower and the event
reader are both one: kafka_consent.py and kafka_events.py say why each bypasses faust)."""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaConsumer, TopicPartition

from shared.kafka import make_consumer
from shared.settings import ServiceSettings


class AssignmentFollower:
    client_id = "segwarden-segmenter"

    def __init__(self, settings: ServiceSettings, topic: str, group_id: str) -> None:
        self.settings = settings
        self.topic = topic
        self.group_id = group_id
        self.consumer: AIOKafkaConsumer | None = None
        self.partitions: set[int] = set()
        # Held while input is handled, so a revocation waits for the input in flight.
        self._busy = asyncio.Lock()

    async def start(self) -> None:
        self.consumer = make_consumer(self.settings, group_id=self.group_id, client_id=self.client_id)
        await self.consumer.start()

    async def stop(self) -> None:
        if self.consumer is not None:
            await self.consumer.stop()

    def _assign(self) -> None:
        """Read `partitions` from now on, each from its committed offset (call under `_busy`)."""
        if self.consumer is not None:
            self.consumer.assign([TopicPartition(self.topic, p) for p in sorted(self.partitions)])
