"""KafkaMembershipPublisher: membership changes and definitions out to Kafka, acknowledged before return.

Every membership change goes out twice in one producer batch: the change on
`segment.membership`, and its durable trace on the compacted `segment.membership.state` (the
`joined` as value, a tombstone for a `left`), keyed `<segment_id>|<customer_id>` and written
to the customer's partition, so partition n of the state topic holds exactly the customers of
partition n of every customer-keyed topic. Re-sending either is harmless (keyed state;
consumers de-duplicate on `event_id`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Protocol

from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import murmur2
from aiokafka.producer.message_accumulator import BatchBuilder

from services.segmenter.metrics import JOINS_WITHHELD
from shared.events import DEFINITION_VERSION_HEADER, MembershipChanged, SegmentDefinition
from shared.metrics import MESSAGES_PUBLISHED
from shared.topics import SEGMENT_DEFINITIONS, SEGMENT_MEMBERSHIP, SEGMENT_MEMBERSHIP_STATE, TopicNames

log = logging.getLogger(__name__)
Observer = Callable[[Sequence[MembershipChanged]], None]
Record = tuple[MembershipChanged, bytes]  # a change and its JSON
FEW = 32  # changes up to which a publish joins the open batches (send) rather than waiting (send_batch)


class JoinGate(Protocol):
    async def closed_partitions(self) -> set[int]:
        """Partitions whose `joined` must not go out now (their Redis state is being rebuilt)."""
        ...


def customer_partition(customer_id: str, partitions: int) -> int:
    """The partition Kafka's default (murmur2) partitioner gives the customer-id key."""
    return (murmur2(customer_id.encode()) & 0x7FFFFFFF) % partitions


def state_key(segment_id: str, customer_id: str) -> bytes:
    return f"{segment_id}|{customer_id}".encode()


class KafkaMembershipPublisher:
    def __init__(self, producer: AIOKafkaProducer, topics: TopicNames, gate: JoinGate | None = None) -> None:
        self.producer = producer
        self.partitions = topics.partitions
        self.membership_topic = topics.name(SEGMENT_MEMBERSHIP)
        self.state_topic = topics.name(SEGMENT_MEMBERSHIP_STATE)
        self.definitions_topic = topics.name(SEGMENT_DEFINITIONS)
        self.gate = gate
        self.observers: list[Observer] = []  # told what was acknowledged (the rebuild's announced view)

    async def publish(
        self, changes: Sequence[MembershipChanged], encoded: Sequence[bytes] | None = None
    ) -> list[MembershipChanged]:
        """Send all (but joins the gate holds back), then wait for every ack; returns what was sent.
        `encoded` is each change's JSON when the caller holds it (an outbox does): not built again."""
        values = encoded if encoded is not None else [c.to_bytes() for c in changes]
        records = await self._admitted(list(zip(changes, values, strict=True)))
        if not records:
            return []
        if len(records) <= FEW:
            await self._send_each(records)
        else:
            await self._send_batches(records)
        sent = [c for c, _ in records]
        MESSAGES_PUBLISHED.labels(self.membership_topic).inc(len(sent))
        MESSAGES_PUBLISHED.labels(self.state_topic).inc(len(sent))
        for observe in self.observers:
            observe(sent)
        return sent

    def _partition(self, customer_id: str, known: dict[str, int]) -> int:
        """The customer's partition, hashed once per publish (an opt-out sends a thousand of theirs)."""
        partition = known.get(customer_id)
        if partition is None:
            partition = known[customer_id] = customer_partition(customer_id, self.partitions)
        return partition

    async def _send_each(self, records: Sequence[Record]) -> None:
        """A few changes (an eviction, an admission) join the producer's open batches: send_batch
        waits until the partition's pending batch is drained, so under a saturating event load
        hundreds of admissions queued there and an eviction waited behind them (aiokafka raised
        KafkaTimeoutError in add_batch; a `left` took over 30 s, docs/segmenter.md "Benchmark")."""
        futures = []
        known: dict[str, int] = {}
        for c, value in records:
            partition = self._partition(c.customer_id, known)
            key = c.customer_id.encode()
            futures.append(
                await self.producer.send(self.membership_topic, value, key=key, partition=partition)
            )
            state = value if c.action == "joined" else None
            skey = state_key(c.segment_id, c.customer_id)
            futures.append(await self.producer.send(self.state_topic, state, key=skey, partition=partition))
        await asyncio.gather(*futures)

    async def _send_batches(self, records: Sequence[Record]) -> None:
        # Whole batches, one per topic partition, handed to the producer at once: a loop of
        # send() calls is cut into batches by the linger timer while it runs (measured on Tansu:
        # 1,000 changes went out in several requests, 45-190 ms to the acks; built whole, 6-25 ms).
        batches: dict[tuple[str, int], list[BatchBuilder]] = {}
        known: dict[str, int] = {}
        for c, value in records:
            partition = self._partition(c.customer_id, known)
            self._append(batches, self.membership_topic, partition, c.customer_id.encode(), value)
            state = value if c.action == "joined" else None
            self._append(batches, self.state_topic, partition, state_key(c.segment_id, c.customer_id), state)
        futures = [
            await self.producer.send_batch(batch, topic, partition=partition)
            for (topic, partition), builders in batches.items()
            for batch in builders
        ]
        await asyncio.gather(*futures)

    def _append(
        self,
        batches: dict[tuple[str, int], list[BatchBuilder]],
        topic: str,
        partition: int,
        key: bytes,
        value: bytes | None,
    ) -> None:
        """Add a record to the topic partition's last batch, or to a new one when that is full."""
        builders = batches.setdefault((topic, partition), [])
        if builders and builders[-1].append(key=key, value=value, timestamp=None) is not None:
            return
        builders.append(self.producer.create_batch())
        if builders[-1].append(key=key, value=value, timestamp=None) is None:
            raise ValueError(f"a record of {len(value or b'')} bytes does not fit in a batch")

    async def _admitted(self, records: list[Record]) -> list[Record]:
        """Fail closed while Redis is rebuilt: a `joined` decided on partial state never goes out
        (the rebuild announces the members once their state is whole); every `left` does."""
        if self.gate is None or not any(c.action == "joined" for c, _ in records):
            return records
        closed = await self.gate.closed_partitions()
        if not closed:
            return records
        held = {
            c.event_id
            for c, _ in records
            if c.action == "joined" and customer_partition(c.customer_id, self.partitions) in closed
        }
        if held:
            JOINS_WITHHELD.inc(len(held))
            log.info("joins withheld while redis is rebuilt", extra={"joins": len(held)})
        return [(c, value) for c, value in records if c.event_id not in held]

    async def publish_definition(
        self, segment_id: str, definition: SegmentDefinition | None, version: int
    ) -> None:
        """The definition, or a tombstone when the segment was deleted. A tombstone has no value
        to carry its version, so the `version` header does (shared.events.DEFINITION_VERSION_HEADER)."""
        value = definition.to_bytes() if definition is not None else None
        headers = None if definition is not None else [(DEFINITION_VERSION_HEADER, str(version).encode())]
        await self.producer.send_and_wait(
            self.definitions_topic, value, key=segment_id.encode(), headers=headers
        )
        MESSAGES_PUBLISHED.labels(self.definitions_topic).inc()
