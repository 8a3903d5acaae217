"""KafkaConsentFollower: the hot path, consent.changes read by a dedicated aiokafka consumer.

faust delivers every topic of an app through one conductor, so a backlog of customer events
delays a consent change queued behind it (head-of-line blocking). This consumer fetches
consent changes on its own, with the short fetch wait, and follows faust's assignment: it
reads exactly the consent partitions whose customer.events partitions this worker owns, so
one process still sees all of a customer's inputs. Offsets are committed under its own group
id after the changes of each fetch are handled (at least once; handling is idempotent).

It is also the admission barrier (domain.ports.ConsentBarrier): `settled` reads the customers'
partition ends afresh (ListOffsets) and returns once this follower's position is at or past them
with nothing fetched left unhandled. The embedded broker reports a partition's end as the last
batch's start + 1, short when that batch holds several records; but a fetch returns whole
batches, so a position past that start with nothing unhandled means the whole batch is handled.

Event batches give way to it (`give_way`): one starts only once the changes already fetched are
handled, and pauses for them at each of its yield points (handlers.StreamHandlers._give_way), so
a change fetched mid-batch waits for at most the step in flight (the batch's Redis step, or its
commit and publish, which hold its customers' locks).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Collection, Iterable

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import IllegalStateError
from aiokafka.partitioner import murmur2
from aiokafka.structs import ConsumerRecord

from services.segmenter.adapters.kafka_following import AssignmentFollower
from services.segmenter.domain.ports import (
    BarrierTimeoutError,
    ConsentBarrier,
    ConsentPartitionMovedError,
    LiveInput,
)
from shared.failpoints import failpoint
from shared.kafka import make_consumer
from shared.settings import ServiceSettings
from shared.supervise import within

log = logging.getLogger(__name__)
Handler = Callable[[ConsumerRecord], Awaitable[None]]


BARRIER_TIMEOUT_S = 20.0
POLL_S = 0.1  # a waiter re-checks this often even without news (an empty fetch moves nothing)


class KafkaConsentFollower(AssignmentFollower, ConsentBarrier, LiveInput):
    client_id = "segwarden-segmenter-consent"

    def __init__(self, settings: ServiceSettings, topic: str, group_id: str, handle: Handler) -> None:
        super().__init__(settings, topic, group_id)
        self.handle = handle
        # Per partition: records fetched (returned by getmany) and not yet handled.
        self._unhandled: dict[int, int] = {}
        self._progress = asyncio.Event()  # replaced (after being set) whenever a record is handled
        # Fetches that returned records, and how many of them are handled through (or given up:
        # revoked, rewound): what an event batch gives way to (give_way).
        self._fetches = 0
        self._fetches_done = 0
        # The barrier's ListOffsets go on a consumer of their own, which never fetches: on this
        # one's connection each waited for the fetch in flight, which the broker holds for up to
        # KAFKA_FETCH_MAX_WAIT_MS when nothing is new (29 ms at the median of 50 in the catalogue
        # bench's joins; a broker answers a connection's requests in order).
        self._ends: AIOKafkaConsumer | None = None

    async def start(self) -> None:
        if self._ends is None:  # kept from an earlier attempt (start is retried)
            ends = make_consumer(self.settings, group_id=None, client_id=f"{self.client_id}-ends")
            await ends.start()
            self._ends = ends
        await super().start()

    async def stop(self) -> None:
        ends, self._ends = self._ends, None  # a start after this one makes a new one
        if ends is not None:
            await ends.stop()
        await super().stop()

    async def follow(self, partitions: Iterable[int]) -> None:
        """Read exactly these partitions from now on (after the change in flight is done)."""
        async with self._busy:
            self.partitions = set(partitions)
            # assign() goes back to the committed offsets: what was fetched is fetched (and counted) again.
            self._unhandled = dict.fromkeys(self.partitions, 0)
            self._assign()

    async def run(self) -> None:
        """Fetch and handle until cancelled; run under the supervisor, which restarts it on a crash."""
        assert self.consumer is not None
        while True:
            if not self.partitions:
                await asyncio.sleep(0.05)
                continue
            batches = await self.consumer.getmany(timeout_ms=self.settings.kafka_fetch_max_wait_ms * 4)
            if not batches:
                continue
            self._fetches += 1
            for tp, records in batches.items():  # all fetched before any is handled: see settled()
                self._unhandled[tp.partition] = self._unhandled.get(tp.partition, 0) + len(records)
            try:
                for tp, records in batches.items():
                    await self._handle_all(tp, records)
            except Exception:
                self._rewind(batches)
                raise
            finally:  # handled, or to be fetched again: no one waits for these any more
                self._fetches_done = self._fetches
                self._advanced()

    async def give_way(self) -> None:
        """Return once the consent changes fetched before the call are handled (or failed, to be
        read again). The event follower awaits it before each batch, and the batch at each of its
        yield points (never while it holds a customer's lock, which a change may need): both
        followers share one event loop, and under a saturating event load each await of a
        change's handling (some ten Redis round trips and a produce) waited behind a batch's work,
        so 1.4 changes a second were handled where 21 were without the load, and an opt-out
        waited behind the grants before it (docs/segmenter.md, "Why consent changes have their
        own consumer"). Only what is already fetched is waited for: a stream of changes still
        lets a batch through between two of its fetches."""
        fetch = self._fetches
        while self._fetches_done < fetch:
            progress = self._progress
            await progress.wait()

    async def waiting(self) -> bool:
        """Whether changes are fetched and not yet handled (LiveInput: the passes over every
        customer pause for them, services/segmenter/pacing.py)."""
        return self._fetches_done < self._fetches

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
                self._unhandled[tp.partition] = max(0, self._unhandled.get(tp.partition, 0) - 1)
                self._advanced()
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
            self._unhandled[tp.partition] = 0  # fetched (and counted) again after the seek
            if records and tp in assigned:
                self.consumer.seek(tp, records[0].offset)

    def _advanced(self) -> None:
        progress, self._progress = self._progress, asyncio.Event()
        progress.set()

    def partition_of(self, customer_id: str) -> int:
        """The partition of the customer's consent changes (the producers' default partitioner)."""
        assert self.consumer is not None
        count = len(self.consumer.partitions_for_topic(self.topic) or ()) or self.settings.topic_partitions
        return (murmur2(customer_id.encode()) & 0x7FFFFFFF) % count

    async def settled(self, customer_ids: Collection[str], timeout: float = BARRIER_TIMEOUT_S) -> None:
        assert self.consumer is not None
        tps = {TopicPartition(self.topic, self.partition_of(c)) for c in customer_ids}
        if not tps:
            return
        assert self._ends is not None
        ends = await self._ends.end_offsets(sorted(tps))  # fresh, never a cached high-water mark
        deadline = time.monotonic() + timeout
        while True:
            progress = self._progress
            if moved := sorted(tp.partition for tp in tps if tp.partition not in self.partitions):
                # Never read here again: the next owner admits these joins (hand_over); waiting
                # out the timeout held them (and a compliance scan) 20 s for nothing.
                raise ConsentPartitionMovedError(f"consent partitions {moved} are not followed here")
            if all([await self._past(tp, end) for tp, end in ends.items()]):
                return
            left = deadline - time.monotonic()
            if left <= 0:  # no record handled for `timeout` s: stuck, or the partitions moved away
                raise BarrierTimeoutError(f"consent partitions not read: {await self._where(ends)}")
            try:
                await within(min(POLL_S, left), progress.wait())
                deadline = time.monotonic() + timeout  # the follower moves: a backlog, not a stall
            except TimeoutError:
                pass

    async def _where(self, ends: dict[TopicPartition, int]) -> str:
        """Per partition waited for: its end, followed or not, records unhandled, and position."""
        assert self.consumer is not None
        out = []
        for tp, end in ends.items():
            followed = tp.partition in self.partitions
            try:
                position = await within(POLL_S, self.consumer.position(tp)) if followed else None
            except (IllegalStateError, TimeoutError):
                position = None
            unhandled = self._unhandled.get(tp.partition, 0)
            out.append(
                f"{tp.partition}: end {end}, followed {followed}, unhandled {unhandled}, at {position}"
            )
        return "; ".join(out)

    async def _past(self, tp: TopicPartition, end: int) -> bool:
        """Handled up to `end` with nothing fetched left over (see the module's note on ends)."""
        assert self.consumer is not None
        if tp.partition not in self.partitions or self._unhandled.get(tp.partition, 0):
            return False
        try:
            return await within(POLL_S, self.consumer.position(tp)) >= end
        except (IllegalStateError, TimeoutError):  # revoked meanwhile, or no position yet
            return False
