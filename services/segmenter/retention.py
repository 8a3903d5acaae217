"""RetentionJob: lets go of customers inactive past the retention of the purposes they serve.

Each run reads, per owned partition, only the customers whose last activity is older than the
shortest retention of any segment (the partition's `activity` sorted set), leaves every segment
whose retention passed (`retention_expired`, through the normal commit and outbox), and purges
the features of those inactive past the longest retention the registered segments need.
Every run, also one that let no one go, is recorded in the ledger (counts only).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime

from services.segmenter.adapters.redis_store import RedisCustomerStore
from services.segmenter.domain.customer import CustomerSnapshot
from services.segmenter.domain.feature_values import LAST
from services.segmenter.domain.membership import ON_SWEEP
from services.segmenter.domain.retention import RetentionPolicy
from services.segmenter.domain.segments import SegmentRegistry
from services.segmenter.membership_service import NO_CAUSE, MembershipService
from services.segmenter.metrics import RETENTION_PURGED
from shared.events import RetentionRun, new_event_id
from shared.retention_runs import RetentionRuns

log = logging.getLogger(__name__)
CHUNK = 500


class RetentionJob:
    def __init__(
        self,
        store: RedisCustomerStore,
        registry: SegmentRegistry,
        membership: MembershipService,
        policy: RetentionPolicy,
        owned: Callable[[], list[int]],
        runs: RetentionRuns,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.runs = runs
        self.registry = registry
        self.membership = membership
        self.policy = policy
        self.owned = owned
        self.clock = clock

    async def run_once(self) -> int:
        """One pass over the owned partitions, recorded; how many customers' features were purged."""
        started = self.clock()
        segments = self.registry.all()
        before = started - self.policy.shortest_s(segments)
        purged = 0
        for partition in self.owned():
            # Customers past the shortest retention but within the longest are read again on each
            # run (nothing changes for them): bounded by CHUNK per partition and run.
            due = await self.store.inactive_since(partition, before, CHUNK)
            if not due:
                continue
            snapshots = await self.store.read_many(due)
            plans = [
                self.membership.plan(s, [g for g in segments if g.id in s.segments], ON_SWEEP, NO_CAUSE)
                for s in snapshots
            ]
            await self.membership.apply_many([p for p in plans if p is not None])
            for snapshot in snapshots:
                purged += await self._purge(partition, snapshot)
        if purged:
            RETENTION_PURGED.inc(purged)
            log.info("features purged past retention", extra={"customers": purged})
        await self.runs.record(
            RetentionRun(
                event_id=new_event_id(),
                service="segmenter",
                started_at=datetime.fromtimestamp(started, UTC),
                finished_at=datetime.fromtimestamp(self.clock(), UTC),
                customers=purged,
            )
        )
        return purged

    async def _purge(self, partition: int, snapshot: CustomerSnapshot) -> int:
        """Under the customer's lock (events are applied under it), so an event applied meanwhile
        either keeps the features (it moved `last`) or comes after the purge and is queued anew."""
        last = snapshot.features.get(LAST)
        if last is None:
            return await self._let_go_consent_only(partition, snapshot)
        if not self.policy.features_expired(self.registry.all(), float(last), self.clock()):
            return 0
        async with self.membership.locks.hold(snapshot.customer_id):
            done = await self.store.purge_features(snapshot.customer_id, last)
            fresh = await self.store.read(snapshot.customer_id)
            if LAST not in fresh.features:
                await self.store.forget_activity(partition, snapshot.customer_id)
        return int(done)

    async def _let_go_consent_only(self, partition: int, snapshot: CustomerSnapshot) -> int:
        """A customer known only from consent has no features to delete (their consent copy stays,
        as everyone's: the consent service owns it) and has left their segments above; once past
        the longest retention they leave the activity set, unless an event or a newer choice came
        meanwhile. Counted with the purged: the segmenter keeps nothing more of them to purge."""
        since = snapshot.consent.last_choice()
        if since is not None and not self.policy.features_expired(self.registry.all(), since, self.clock()):
            return 0
        async with self.membership.locks.hold(snapshot.customer_id):
            fresh = await self.store.read(snapshot.customer_id)
            if LAST in fresh.features or fresh.consent.last_choice() != since:
                return 0
            await self.store.forget_activity(partition, snapshot.customer_id)
        return int(since is not None)
