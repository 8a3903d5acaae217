"""Rebuilds the Redis state of some partitions from the topics, without announcing anything.

Order: the erasure markers from `erasure.requests`; consent from `consent.state` (what is from
before an erasure refused); features, dropped for every known customer and for every customer
the replay meets (known or not: each replay has a number, adapters/lua.py), by replaying
`customer.events` from the start of retention up to where the event follower is (skipping what
an erasure request since deleted), while the partitions' event handlers wait; then membership,
decided again for every known customer and committed silently (the announcements are the
reconciler's job, against what was announced before). Everything is idempotent: features start
over, an event counts once (its offset, checked in the same Lua step), consent only moves
forward, so a rebuild interrupted by a crash or an error is simply run again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AsyncExitStack
from typing import TypeVar

from aiokafka.structs import ConsumerRecord
from pydantic import BaseModel, ValidationError

from services.segmenter.adapters.kafka_partitions import KafkaPartitionReader
from services.segmenter.adapters.redis_store import RedisCustomerStore
from services.segmenter.consent_loader import load_consent_state
from services.segmenter.domain.customer import CustomerSnapshot
from services.segmenter.domain.erasure import ErasureMark
from services.segmenter.domain.membership import ON_SWEEP, member_flags
from services.segmenter.domain.segments import SegmentRegistry
from services.segmenter.handlers import erasure_mark, event_write
from services.segmenter.membership_service import MAX_ATTEMPTS, Cause, CommitConflictError, MembershipService
from services.segmenter.metrics import REBUILD_EVENTS_REPLAYED
from services.segmenter.settings import SegmenterSettings
from shared.events import CustomerEvent, ErasureRequested
from shared.failpoints import failpoint
from shared.kafka import topic_names
from shared.topics import CONSENT_STATE, CUSTOMER_EVENTS, ERASURE_REQUESTS, TopicSpec

log = logging.getLogger(__name__)
M = TypeVar("M", bound=BaseModel)
CHUNK = 200
NO_CAUSE = Cause(None, None)
# partition -> the next offset the event follower returns (None when it has not fetched yet)
Positions = Callable[[Sequence[int]], Awaitable[dict[int, int | None]]]
Track = Callable[[int, str], Awaitable[None]]  # remember a customer and queue its grant's expiry


class StateRebuilder:
    def __init__(
        self,
        settings: SegmenterSettings,
        store: RedisCustomerStore,
        registry: SegmentRegistry,
        membership: MembershipService,
        positions: Positions,
        track: Track,
    ) -> None:
        self.settings = settings
        self.store = store
        self.registry = registry
        self.membership = membership
        self.positions = positions
        self.track = track

    def _reader(self, spec: TopicSpec, partitions: Sequence[int]) -> KafkaPartitionReader:
        topic = topic_names(self.settings).name(spec)
        return KafkaPartitionReader(
            self.settings, topic, f"segwarden-segmenter-rebuild-{spec.base}", partitions
        )

    async def rebuild(self, partitions: Sequence[int], positions: dict[int, int | None]) -> None:
        """With the partitions' event handlers held (RedisRecovery.admit)."""
        started = time.monotonic()
        await self.forget_features(partitions)
        erased = await self.erasures(partitions)
        customers = await self.consent(partitions)
        replayed = await self.replay(partitions, erased, positions)
        await self.settle(partitions)
        log.info(
            "rebuilt redis state",
            extra={
                "partitions": list(partitions),
                "consent_customers": customers,
                "events": replayed,
                "seconds": round(time.monotonic() - started, 3),
            },
        )

    async def consent(self, partitions: Sequence[int]) -> int:
        """consent.state of the partitions into Redis; its customers remembered, expiries queued."""
        return await load_consent_state(self._reader(CONSENT_STATE, partitions), self.store, self.track)

    async def erasures(self, partitions: Sequence[int]) -> dict[str, ErasureMark]:
        """customer -> its last erasure request, each marked in Redis (a marker past its ttl is
        gone at once): older input stays forgotten."""
        records = await self._reader(ERASURE_REQUESTS, partitions).read_once()
        erased: dict[str, ErasureMark] = {}
        for record in records:
            request = _decode(record, ErasureRequested)
            if request is not None:
                erased[request.customer_id] = erasure_mark(request, record)
        for customer_id, mark in erased.items():
            await self.store.mark_erased(customer_id, mark)
        return erased

    async def forget_features(self, partitions: Sequence[int]) -> None:
        """Features written since the loss (or by an owner that never finished) start over: each
        customer's applied offsets live in its features, and a later offset refuses older ones."""
        for partition in partitions:
            chunk: list[str] = []
            async for customer_id in self.store.known_customers(partition):
                chunk.append(customer_id)
                if len(chunk) >= CHUNK:
                    await self.store.forget_features(chunk)
                    chunk = []
            if chunk:
                await self.store.forget_features(chunk)

    async def replay(
        self, partitions: Sequence[int], erased: dict[str, ErasureMark], positions: dict[int, int | None]
    ) -> int:
        """customer.events from the beginning up to the event follower's positions (or the end,
        if further)."""
        number = await self.store.next_replay()  # each customer met starts over, known or not
        reader = self._reader(CUSTOMER_EVENTS, partitions)
        await reader.start()
        replayed = 0
        try:
            ends = await reader.end_offsets()
            stops = {p: max(ends.get(p, 0), positions.get(p) or 0) for p in partitions}
            async for records in reader.batches_until(stops):
                replayed += await self._apply(records, erased, number)
                failpoint("segmenter.rebuild_mid_replay")
        finally:
            await reader.stop()
        return replayed

    async def _apply(
        self, records: Sequence[ConsumerRecord], erased: dict[str, ErasureMark], replay: str
    ) -> int:
        writes, known = [], set()
        for record in records:
            event = _decode(record, CustomerEvent)
            mark = erased.get(event.customer_id) if event is not None else None
            # Dead-lettered when first read, or forgotten by an erasure since (also when its
            # marker is past its ttl: the embedded broker keeps events that long and longer).
            if event is None or (mark is not None and record.timestamp <= mark.at_ms):
                continue
            writes.append(event_write(record, event))
            known.add((record.partition, event.customer_id))
        if writes:
            await self.store.apply_events(writes, known, replay)
            REBUILD_EVENTS_REPLAYED.inc(len(writes))
        return len(writes)

    async def settle(self, partitions: Sequence[int]) -> None:
        """Membership decided again for every known customer, committed without announcement."""
        for partition in partitions:
            chunk: list[str] = []
            async for customer_id in self.store.known_customers(partition):
                chunk.append(customer_id)
                if len(chunk) >= CHUNK:
                    await self._settle_chunk(partition, chunk)
                    chunk = []
            if chunk:
                await self._settle_chunk(partition, chunk)

    async def _settle_chunk(self, partition: int, customer_ids: list[str]) -> None:
        async with AsyncExitStack() as stack:
            for customer_id in sorted(set(customer_ids)):
                await stack.enter_async_context(self.membership.locks.hold(customer_id))
            snapshots = await self.store.read_many(customer_ids)
            for _ in range(MAX_ATTEMPTS):
                snapshots = await self._settle_many(snapshots)
                if not snapshots:
                    return
        raise CommitConflictError(f"no stable version after {MAX_ATTEMPTS} attempts")

    async def _settle_many(self, snapshots: Sequence[CustomerSnapshot]) -> list[CustomerSnapshot]:
        """Decide every customer and commit their changes silently, all in one `commit_many` and
        one member-set write (one at a time, a rebuild spent some 0.8 ms a customer here, three
        quarters of it: bench_segmenter_rebuild); the customers whose commit was refused (changed
        since their snapshot: a consent change), read again."""
        segments, now = self.registry.all(), time.time()
        decided = []
        for snapshot in snapshots:
            plan = self.membership.plan(snapshot, segments, ON_SWEEP, NO_CAUSE)
            changes = plan.decide(snapshot, now) if plan else []
            if changes:
                decided.append((snapshot, [(change, "") for change in changes]))
        applied, refused = [], []
        for (snapshot, _), result in zip(decided, await self.store.commit_many(decided, now), strict=True):
            if result is None:
                refused.append(snapshot.customer_id)
            else:
                applied.append((snapshot.customer_id, member_flags(result.applied)))
        if applied:
            failpoint("segmenter.rebuild_after_settle_commit")  # slots decided, member sets not yet
            await self.store.set_members_many(applied)
        return await self.store.read_many(refused) if refused else []


def _decode(record: ConsumerRecord, schema: type[M]) -> M | None:
    if record.value is None:
        return None
    try:
        return schema.model_validate_json(record.value)
    except ValidationError:
        return None
