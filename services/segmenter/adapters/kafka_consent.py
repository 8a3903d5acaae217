"""KafkaConsentFollower: the hot path, consent.changes read by a dedicated aiokafka consumer.

faust delivers every topic of an app through one conductor, so a backlog of customer events
delays a consent change queued behind it (head-of-line blocking). This consumer fetches
consent changes on its own, with the short fetch wait, and follows faust's assignment: it
reads exactly the consent partitions whose customer.events partitions this worker owns, so
one process still sees all of a customer's inputs. Offsets are committed under its own group
id after the changes of each fetch are handled (at least once; handling is idempotent).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import ConsumerRecord

from shared.failpoints import failpoint
from shared.kafka import make_consumer
from shared.settings import ServiceSettings

log = logging.getLogger(__name__)
Handler = Callable[[ConsumerRecord], Awaitable[None]]


class KafkaConsentFollower:
    def __init__(self, settings: ServiceSettings, topic: str, group_id: str, handle: Handler) -> None:
        self.settings = settings
        self.topic = topic
        self.group_id = group_id
        self.handle = handle
        self.consumer: AIOKafkaConsumer | None = None
        self.partitions: set[int] = set()
        # Held while a record is handled, so a revocation waits for the change in flight.
        self._busy = asyncio.Lock()

    async def start(self) -> None:
        self.consumer = make_consumer(
            self.settings, group_id=self.group_id, client_id="segwarden-segmenter-consent"
        )
        await self.consumer.start()

    async def stop(self) -> None:
        if self.consumer is not None:
            await self.consumer.stop()

    async def follow(self, partitions: Iterable[int]) -> None:
        """Read exactly these partitions from now on (after the change in flight is done)."""
        async with self._busy:
            self.partitions = set(partitions)
            if self.consumer is not None:
                self.consumer.assign([TopicPartition(self.topic, p) for p in sorted(self.partitions)])

    async def run(self) -> None:
        """Fetch and handle until cancelled; run under the supervisor, which restarts it on a crash."""
        assert self.consumer is not None
        while True:
            if not self.partitions:
                await asyncio.sleep(0.05)
                continue
            batches = await self.consumer.getmany(timeout_ms=self.settings.kafka_fetch_max_wait_ms * 4)
            try:
                for tp, records in batches.items():
                    await self._handle_all(tp, records)
            except Exception:
                self._rewind(batches)
                raise

    async def _handle_all(self, tp: TopicPartition, records: list[ConsumerRecord]) -> None:
        """Handle each change at once; commit once per fetched batch (a redelivery is harmless)."""
        assert self.consumer is not None
        done = None
        for record in records:
            async with self._busy:
                if tp.partition not in self.partitions:
                    break  # revoked meanwhile: the new owner goes on from the last commit
                await self.handle(record)
                done = record.offset
                failpoint("segmenter.consent_mid_batch")  # handled, not yet committed
        if done is not None:
            await self._commit(tp, done + 1)

    async def _commit(self, tp: TopicPartition, offset: int) -> None:
        """Commit `tp` only while it is still ours: committing a partition revoked meanwhile (between
        the last record and here) raises, and its new owner goes on from the last commit anyway."""
        assert self.consumer is not None
        async with self._busy:
            if tp.partition in self.partitions and tp in self.consumer.assignment():
                await self.consumer.commit({tp: offset})

    def _rewind(self, batches: dict[TopicPartition, list[ConsumerRecord]]) -> None:
        """After a failure mid-batch, read the fetched batches again when the run restarts: the
        consumer's position is already past them (a redelivery is harmless)."""
        assert self.consumer is not None
        assigned = self.consumer.assignment()
        for tp, records in batches.items():
            if records and tp in assigned:
                self.consumer.seek(tp, records[0].offset)
