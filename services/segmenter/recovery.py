"""Redis is a cache that can be lost: notice it, fail closed at once, rebuild, re-announce.

The generation marker (adapters/redis_generation.py) is checked at start, every
CHECK_INTERVAL_S (the supervisor runs `check`; so also on the first answer after Redis was
away) and before any batch of joins is published. Partitions whose state is not built for the
generation in force are *closed*: the publisher holds their joins back (lefts still go out) and
/readyz says why. The owned closed partitions are rebuilt from the topics (rebuild.py) while
their customer events and erasures wait (`admit`), marked built, opened, then their announced
membership is reconciled with Redis (reconcile.py). A partition taken over from another worker
is reconciled too, and rebuilt first if its last owner never finished.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import Any

from aiokafka.structs import ConsumerRecord

from services.segmenter.adapters.redis_generation import RedisGenerationMarker
from services.segmenter.domain.customer import CustomerSnapshot
from services.segmenter.domain.erasure import ErasureMark
from services.segmenter.domain.segments import Segment
from services.segmenter.handlers import StreamHandlers
from services.segmenter.membership_service import Cause
from services.segmenter.metrics import REDIS_REBUILDING, REDIS_REBUILDS
from services.segmenter.rebuild import StateRebuilder
from services.segmenter.reconcile import AnnouncedReconciler
from shared.events import MembershipChanged

log = logging.getLogger(__name__)
CHECK_INTERVAL_S = 1.0
REASONS = {
    "first_start": "redis: building state from the topics (first start)",
    "lost": "redis: rebuilding after data loss",
    "replaced": "redis: rebuilding after data loss (another generation marker)",
    "takeover": "redis: rebuilding a partition its last owner left unfinished",
}
ANNOUNCING = "redis: announcing the rebuilt membership"


class RedisRecovery:
    def __init__(
        self,
        marker: RedisGenerationMarker,
        rebuilder: StateRebuilder,
        reconciler: AnnouncedReconciler,
        known_keys: list[str],
    ) -> None:
        self.marker = marker
        self.rebuilder = rebuilder
        self.reconciler = reconciler
        self.known_keys = known_keys  # per-partition keys that exist only if Redis holds our data
        self.generation: str | None = None  # the generation in force, as this worker knows it
        self.closed: set[int] = set(range(marker.partitions))  # nothing is known before the first check
        self.owned: set[int] = set()
        self.assigned = False
        self.reconciled: set[int] = set()
        self.cause: str | None = None
        self.announcing = False
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()  # a check and the marking of rebuilt partitions never interleave
        self.holding: set[int] = set()  # partitions being rebuilt: their events and erasures wait
        self._busy: Counter[int] = Counter()  # handlers in flight per partition
        self._turns = asyncio.Condition()

    def reason(self) -> str | None:
        """Why /readyz is not ready yet, or None."""
        if self.generation is None:
            return "redis: generation marker not checked yet"
        if self.cause is None:
            return None
        return ANNOUNCING if self.announcing else REASONS[self.cause]

    async def closed_partitions(self) -> set[int]:
        """The publisher's gate: partitions whose joins are held; notices a loss at the door."""
        if self.generation is not None and await self.marker.current() != self.generation:
            await self.check()
        return self.closed

    @asynccontextmanager
    async def admit(self, partitions: Iterable[int]) -> AsyncIterator[None]:
        """Around a handler that writes features or erases: waits while a partition is rebuilt, so
        the replay is the only writer of its features (an event applied first would refuse the
        older ones, its offset being higher)."""
        wanted = set(partitions)
        async with self._turns:
            await self._turns.wait_for(lambda: not (wanted & self.holding))
            self._busy.update(wanted)
        try:
            yield
        finally:
            async with self._turns:
                self._busy.subtract(wanted)
                self._turns.notify_all()

    def trusted(self, partition: int) -> bool:
        """Whether the partition's features are built for the generation in force (not closed,
        not being rebuilt): only then may a rule be decided from them."""
        return partition not in self.closed and partition not in self.holding

    @asynccontextmanager
    async def consent_turn(self, partition: int) -> AsyncIterator[bool]:
        """Around a consent handler's decision: never waits (an eviction must not wait for a
        rebuild), but yields whether the partition's features can be trusted. While it is closed
        or rebuilt they cannot (the rebuild deletes and replays them): the handler then decides
        only what consent alone decides, the leaves of withdrawn or lapsed purposes, and the
        rebuild and the reconciler decide the rest. An open partition's handler counts as in
        flight, so a rebuild starts only once its decision is committed."""
        async with self._turns:
            trusted = self.trusted(partition)
            if trusted:
                self._busy[partition] += 1
        try:
            yield trusted
        finally:
            if trusted:
                async with self._turns:
                    self._busy[partition] -= 1
                    self._turns.notify_all()

    @asynccontextmanager
    async def _held(self, partitions: list[int]) -> AsyncIterator[None]:
        """The partitions' handlers held, once those in flight are done."""
        async with self._turns:
            self.holding |= set(partitions)
            await self._turns.wait_for(lambda: not any(self._busy[p] > 0 for p in partitions))
        try:
            yield
        finally:
            async with self._turns:
                self.holding -= set(partitions)
                self._turns.notify_all()

    async def follow(self, partitions: list[int], assigned: bool) -> None:
        """The owned partitions changed (revoked, or `assigned` by faust): reconcile the new ones."""
        self.owned = set(partitions)
        self.assigned = self.assigned or assigned
        self.reconciled &= self.owned
        self._wake.set()

    def follow_assignment(self, app: Any, owned: Callable[[], list[int]]) -> None:
        """Track faust's assignment; until the first one nothing is known to be owned (or rebuilt)."""

        async def revoked(sender: Any, revoked: set[Any], **_: Any) -> None:
            gone = {tp.partition for tp in revoked}
            await self.follow([p for p in owned() if p not in gone], assigned=False)

        async def assigned(sender: Any, assigned: set[Any], **_: Any) -> None:
            await self.follow(owned(), assigned=True)

        app.on_partitions_revoked.connect(revoked)
        app.on_partitions_assigned.connect(assigned)

    async def check(self) -> None:
        """Compare the marker with this worker's; close what is not built for the generation in force."""
        async with self._lock:
            await self._check()

    async def _check(self) -> None:
        current, rebuilt = await self.marker.read()
        if current is None or current != self.generation:
            await self._adopt(current)
            current, rebuilt = await self.marker.read()
        self.closed = {p for p, built in enumerate(rebuilt) if built != current}
        if (self.owned & self.closed) or (self.owned - self.reconciled):
            self._wake.set()

    async def _adopt(self, current: str | None) -> None:
        known = self.generation or self.marker.local()
        cause = None
        if current is None and known is None and await self.marker.holds_any(self.known_keys):
            # Data written before the marker existed (an upgrade): it is ours, keep it.
            current = await self.marker.claim_kept()
        elif current is None:
            cause = "lost" if known else "first_start"
            current = await self.marker.claim()
        elif known is not None and known != current:
            cause = "replaced"  # another Redis lineage: nothing in it is known to be ours
            await self.marker.forget_rebuilt(range(self.marker.partitions))
        self.marker.remember(current)
        self.generation = current
        if cause is not None:
            self.closed = set(range(self.marker.partitions))
            self.cause, self.announcing = cause, False
            self.reconciled.clear()
            REDIS_REBUILDS.labels(cause).inc()
            REDIS_REBUILDING.set(1)
            log.warning("redis does not hold the segmenter's state: rebuilding", extra={"cause": cause})

    async def run(self) -> None:
        """Rebuild and reconcile whatever the checks and assignments ask for, one job at a time.

        A failure (Redis or the broker away, an injected fault) ends the run with the partitions
        still closed; the service's supervisor logs it and starts the run again after a backoff.
        """
        self._wake.set()  # (re)started: whatever is left to do
        while True:
            await self._wake.wait()
            self._wake.clear()
            await self._work()

    async def _work(self) -> None:
        generation, owned = self.generation, sorted(self.owned)
        stale = [p for p in owned if p in self.closed]
        if generation is None:
            return
        if stale:
            if self.cause is None:
                self.cause = "takeover"
                REDIS_REBUILDS.labels("takeover").inc()
            REDIS_REBUILDING.set(1)
            async with self._held(stale):
                # Only once no handler is in flight: a batch taken and applied after an earlier
                # reading would be forgotten with the features and not replayed (the replay stops
                # there, or at an end offset, which the embedded broker under-reports).
                positions = await self.rebuilder.positions(stale)
                await self.rebuilder.rebuild(stale, positions)
                async with self._lock:
                    if generation != self.generation:
                        return  # lost again meanwhile: the next round starts over
                    for partition in stale:
                        await self.marker.mark_rebuilt(partition, generation)
                        self.closed.discard(partition)
            self.reconciled -= set(stale)
        fresh = [p for p in owned if p not in self.reconciled and p not in self.closed]
        if fresh:
            self.announcing = self.cause is not None
            await self.reconciler.reconcile(fresh)
            self.reconciled |= set(fresh)
        settled = not (self.owned & self.closed) and self.owned <= self.reconciled
        if self.assigned and settled and generation == self.generation:
            if self.cause is not None:
                log.info("redis state rebuilt and announced", extra={"cause": self.cause})
            self.cause, self.announcing = None, False
            REDIS_REBUILDING.set(0)


class HeldStreamHandlers(StreamHandlers):
    """The stream's handlers, with customer events and erasures admitted by the recovery: they
    wait while their partition is rebuilt. Consent goes on (it only moves forward), deciding only
    evictions meanwhile: the fault suite saw a takeover's rebuild, its features deleted, make a
    consent redelivery announce `left rule_unmatched` for customers whose rule still held."""

    recovery: RedisRecovery | None = None

    async def on_events(self, records: Sequence[ConsumerRecord]) -> None:
        if self.recovery is None:
            return await super().on_events(records)
        async with self.recovery.admit({r.partition for r in records}):
            await super().on_events(records)

    async def reconcile_consent(
        self,
        partition: int,
        snapshot: CustomerSnapshot,
        candidates: Sequence[Segment],
        cause: Cause,
        evictions_only: bool = False,
    ) -> list[MembershipChanged]:
        if self.recovery is None:
            return await super().reconcile_consent(partition, snapshot, candidates, cause, evictions_only)
        async with self.recovery.consent_turn(partition) as trusted:
            return await super().reconcile_consent(
                partition, snapshot, candidates, cause, evictions_only or not trusted
            )

    async def erase_customer(
        self, record: ConsumerRecord, customer_id: str, mark: ErasureMark, cause: Cause
    ) -> None:
        if self.recovery is None:
            return await super().erase_customer(record, customer_id, mark, cause)
        async with self.recovery.admit([record.partition]):
            await super().erase_customer(record, customer_id, mark, cause)
