"""ExpiryScheduler: evicts the customers of a grant at its `expires_at`, not at the next sweep.

The due-queue is a Redis sorted set per partition (customer -> earliest expiry of an effective
grant), shared by all workers, so a worker that takes a partition over finds its queue. One task
reads the heads of the owned partitions' queues, evicts what is due, and sleeps until the earliest
expiry or at most `cap_s`, woken early when an earlier expiry is recorded.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from contextlib import suppress

from services.segmenter.adapters.redis_store import RedisCustomerStore
from services.segmenter.domain.membership import ON_SWEEP
from services.segmenter.domain.segments import SegmentRegistry
from services.segmenter.membership_service import Cause, MembershipService
from shared.supervise import within

log = logging.getLogger(__name__)
NO_CAUSE = Cause(None, None)
CAP_S = 0.25


class ExpiryScheduler:
    def __init__(
        self,
        store: RedisCustomerStore,
        registry: SegmentRegistry,
        membership: MembershipService,
        owned: Callable[[], list[int]],
        cap_s: float = CAP_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.registry = registry
        self.membership = membership
        self.owned = owned
        self.cap_s = cap_s
        self.clock = clock
        self._wake = asyncio.Event()
        self._next: float | None = None  # the expiry the task sleeps for

    async def track(self, partition: int, customer_id: str) -> None:
        """Queue the customer's next expiry, from a read under the customer's lock: every writer of
        the entry reads after its own consent update, so the last write holds the latest state."""
        async with self.membership.locks.hold(customer_id):
            fresh = await self.store.read(customer_id)
            expiry = fresh.consent.next_expiry(self.clock())
            await self.store.set_expiry(partition, customer_id, expiry)
        if expiry is not None and (self._next is None or expiry < self._next):
            self._wake.set()

    async def run(self) -> None:
        """Until cancelled; a failure (Redis or the broker away) ends the run, and the service's
        supervisor logs it, shows it on /readyz and starts the run again after a backoff."""
        while True:
            delay = await self.run_once()
            with suppress(TimeoutError):
                await within(delay, self._wake.wait())

    async def run_once(self) -> float:
        """Evict what is due in the owned partitions; the seconds to sleep before the next look."""
        self._wake.clear()
        heads = await self.store.expiry_heads(self.owned(), self.clock())
        earliest = None
        for partition, (due, first) in heads.items():
            if due:
                await self._evict(partition, due)
                first = (await self.store.expiry_heads([partition], self.clock()))[partition][1]
            if first is not None and (earliest is None or first < earliest):
                earliest = first
        self._next = earliest
        if earliest is None:
            return self.cap_s
        return max(0.0, min(self.cap_s, earliest - self.clock()))

    async def _evict(self, partition: int, due: Sequence[str]) -> None:
        snapshots = await self.store.read_many(due)
        plans = []
        for snapshot in snapshots:
            current = [s for s in self.registry.all() if s.id in snapshot.segments]
            plans.append(self.membership.plan(snapshot, current, ON_SWEEP, NO_CAUSE))
        await self.membership.apply_many([p for p in plans if p is not None])
        for customer_id in due:  # the next expiry, or out of the queue
            await self.track(partition, customer_id)
