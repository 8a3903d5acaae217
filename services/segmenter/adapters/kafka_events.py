"""KafkaEventFollower: customer.events read in batches by a plain aiokafka consumer.

faust's per-message path (its consumer thread, conductor, channel and stream, per record) cost
more than all of the segmenter's own work per event: an agent that does nothing reached 4.8k
events/s on the bench machine where a bare aiokafka pipe moves 31k/s (docs/segmenter.md,
"Benchmark"). So, like the consent follower (kafka_consent.py), this consumer follows faust's
assignment: faust stays the group coordinator and still runs consent.state and erasure.requests,
and this worker reads exactly the customer.events partitions of the customers it owns.

Each fetch (at most EVENT_BATCH_SIZE records, across partitions; an idle one waits up to
EVENT_BATCH_WAIT_S) is handled as one batch, and the partitions' offsets are committed (under the
follower's own group id) only once the handler returned, that is once Redis holds every effect
and the membership changes are acknowledged; a crash in between redelivers the batch, which the
offsets applied per partition make harmless.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable

from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord

from services.segmenter.adapters.kafka_following import AssignmentFollower
from shared.kafka import clamp_lag
from shared.settings import ServiceSettings
from shared.supervise import within

log = logging.getLogger(__name__)
BatchHandler = Callable[[list[ConsumerRecord]], Awaitable[None]]


class KafkaEventFollower(AssignmentFollower):
    client_id = "segwarden-segmenter-events"

    def __init__(
        self,
        settings: ServiceSettings,
        topic: str,
        group_id: str,
        batch: tuple[int, float],
        handle: BatchHandler,
        give_way: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        super().__init__(settings, topic, group_id)
        # At most this many records a batch; a fetch with none waits this long (s) for the first.
        self.batch_size, self.batch_wait_s = batch
        self.handle = handle
        # Awaited before each batch: the consent changes already fetched go first (kafka_consent.py).
        self.give_way = give_way
        self.committed: dict[int, int] = {}  # per partition: the offset committed last (for lag)

    async def follow(self, partitions: Iterable[int]) -> None:
        """Read exactly these partitions from now on (after the batch in flight is done); each
        from its committed offset."""
        async with self._busy:
            self.partitions = set(partitions)
            self.committed = {p: o for p, o in self.committed.items() if p in self.partitions}
            self._assign()

    async def run(self) -> None:
        """Fetch and handle until cancelled; run under the supervisor, which restarts it on a crash."""
        assert self.consumer is not None
        while True:
            if not self.partitions:
                await asyncio.sleep(0.05)
                continue
            batches = await self.consumer.getmany(
                timeout_ms=int(self.batch_wait_s * 1000), max_records=self.batch_size
            )
            if batches:
                if self.give_way is not None:
                    await self.give_way()
                await self._handle(batches)

    async def _handle(self, batches: dict[TopicPartition, list[ConsumerRecord]]) -> None:
        assert self.consumer is not None
        async with self._busy:
            owned = {tp: records for tp, records in batches.items() if tp.partition in self.partitions}
            if not owned:
                return  # revoked meanwhile: the new owner goes on from the last commit
            try:
                await self.handle([r for records in owned.values() for r in records])
            except BaseException:
                self._rewind(owned)
                raise
            offsets = {tp: records[-1].offset + 1 for tp, records in owned.items()}
            await self.consumer.commit(offsets)
            self.committed.update({tp.partition: o for tp, o in offsets.items()})

    def _rewind(self, batches: dict[TopicPartition, list[ConsumerRecord]]) -> None:
        """After a failure, read the batch again when the run restarts (the position is past it)."""
        assert self.consumer is not None
        assigned = self.consumer.assignment()
        for tp, records in batches.items():
            if records and tp in assigned:
                self.consumer.seek(tp, records[0].offset)

    async def position(self, partition: int) -> int | None:
        """The next offset this follower reads on `partition`, None when not owned or not fetched."""
        if self.consumer is None or partition not in self.partitions:
            return None
        try:
            return await within(1.0, self.consumer.position(TopicPartition(self.topic, partition)))
        except Exception:  # revoked meanwhile, or no position yet: the end offset rules
            return None

    async def waiting(self) -> bool:
        """Whether events wait (LiveInput, services/segmenter/pacing.py): a batch in flight, or a
        partition's end past this follower's position (the position is known without a round trip)."""
        if self._busy.locked():
            return True
        assert self.consumer is not None
        for partition in self.partitions:
            end = self.consumer.highwater(TopicPartition(self.topic, partition))
            position = await self.position(partition)
            if end is not None and position is not None and end > position:
                return True
        return False

    def lag(self) -> dict[int, int]:
        """Records behind the partition end, per owned partition (clamped: see shared.kafka)."""
        if self.consumer is None:
            return {}
        ends = {p: self.consumer.highwater(TopicPartition(self.topic, p)) for p in self.partitions}
        return {p: clamp_lag(end, self.committed.get(p)) for p, end in ends.items()}
