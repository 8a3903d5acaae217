"""KafkaMembershipPublisher: membership changes and definitions out to Kafka, acknowledged before return."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from aiokafka import AIOKafkaProducer

from shared.events import MembershipChanged, SegmentDefinition
from shared.metrics import MESSAGES_PUBLISHED
from shared.topics import SEGMENT_DEFINITIONS, SEGMENT_MEMBERSHIP, TopicNames


class KafkaMembershipPublisher:
    def __init__(self, producer: AIOKafkaProducer, topics: TopicNames) -> None:
        self.producer = producer
        self.membership_topic = topics.name(SEGMENT_MEMBERSHIP)
        self.definitions_topic = topics.name(SEGMENT_DEFINITIONS)

    async def publish(self, changes: Sequence[MembershipChanged]) -> None:
        """Send all, then wait for every ack (no batching wait beyond the producer's linger)."""
        if not changes:
            return
        futures = [
            await self.producer.send(self.membership_topic, c.to_bytes(), key=c.customer_id.encode())
            for c in changes
        ]
        await asyncio.gather(*futures)
        MESSAGES_PUBLISHED.labels(self.membership_topic).inc(len(changes))

    async def publish_definition(self, segment_id: str, definition: SegmentDefinition | None) -> None:
        """The definition, or a tombstone when the segment was deleted."""
        value = definition.to_bytes() if definition is not None else None
        await self.producer.send_and_wait(self.definitions_topic, value, key=segment_id.encode())
        MESSAGES_PUBLISHED.labels(self.definitions_topic).inc()
