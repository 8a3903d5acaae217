"""Reconciles one customer's live membership with the membership rule, then tells campaign tools.

Order per change: decide (pure) -> commit to the customer's Redis slot (version-checked, consent
re-checked in Lua) -> segment member sets -> egress consent check -> publish. So Redis always
holds a change before it is published, and no `joined` goes out without effective consent.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import UTC, datetime

from services.segmenter.adapters.kafka_publisher import KafkaMembershipPublisher
from services.segmenter.adapters.redis_store import CustomerSnapshot, RedisCustomerStore
from services.segmenter.domain.features import rule_features
from services.segmenter.domain.membership import MembershipChange, Trigger, decide
from services.segmenter.domain.segments import Segment
from services.segmenter.locks import KeyedLocks
from services.segmenter.metrics import COMMIT_CONFLICTS, EVALUATION_SECONDS, MEMBERSHIP_CHANGES
from shared.events import MembershipChanged, new_event_id

log = logging.getLogger(__name__)
MAX_ATTEMPTS = 20
Decider = Callable[[CustomerSnapshot, float], list[MembershipChange]]


class CommitConflictError(RuntimeError):
    """The customer kept changing under every attempt to commit (a bug or a storm)."""


@dataclass(frozen=True)
class Cause:
    event_id: str | None
    at: datetime | None


@dataclass(frozen=True)
class Plan:
    """One customer's pending reconciliation: the state read, how to decide, and why."""

    snapshot: CustomerSnapshot
    decide: Decider
    cause: Cause


class MembershipService:
    def __init__(
        self,
        store: RedisCustomerStore,
        publisher: KafkaMembershipPublisher,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.publisher = publisher
        self.clock = clock
        self.locks = KeyedLocks()

    def plan(
        self, snapshot: CustomerSnapshot, candidates: Sequence[Segment], trigger: Trigger, cause: Cause
    ) -> Plan | None:
        """A plan to apply the membership rule for `candidates`, or None when nothing would change."""
        if not candidates:
            return None

        def rule(snap: CustomerSnapshot, now: float) -> list[MembershipChange]:
            started = time.perf_counter()
            features = rule_features(snap.features, now)
            changes = decide(candidates, features, snap.consent, snap.segments, now, trigger)
            EVALUATION_SECONDS.observe(time.perf_counter() - started)
            return changes

        # The common case ends here: nothing changes, so no lock and no Redis round trip.
        return Plan(snapshot, rule, cause) if rule(snapshot, self.clock()) else None

    async def reconcile(
        self, snapshot: CustomerSnapshot, candidates: Sequence[Segment], trigger: Trigger, cause: Cause
    ) -> list[MembershipChanged]:
        """Apply the membership rule for `candidates` to the customer and publish what changed."""
        plan = self.plan(snapshot, candidates, trigger, cause)
        return await self.apply_many([plan]) if plan else []

    async def evict(self, customer_id: str, reasons: dict[str, str], cause: Cause) -> list[MembershipChanged]:
        """Leave the named segments (segment -> reason) whatever the rule says."""

        def leave(snap: CustomerSnapshot, now: float) -> list[MembershipChange]:
            return [MembershipChange(s, "left", r) for s, r in reasons.items() if s in snap.segments]

        return await self.apply_many([Plan(await self.store.read(customer_id), leave, cause)])

    async def erase(self, customer_id: str, cause: Cause) -> list[MembershipChanged]:
        """Forget the customer's features, consent and segments, then announce every leave."""
        async with self.locks.hold(customer_id):
            segments = await self.store.erase(customer_id)
            left = [MembershipChange(s, "left", "erased") for s in segments]
            await self.store.sync_members(customer_id, left)
            return await self._egress([(customer_id, left, cause)])

    async def apply_many(self, plans: Sequence[Plan]) -> list[MembershipChanged]:
        """Under the customers' locks: decide, commit, sync member sets, publish, each step one
        pipeline for all customers (one plan per customer)."""
        async with AsyncExitStack() as stack:
            for customer_id in sorted({p.snapshot.customer_id for p in plans}):
                await stack.enter_async_context(self.locks.hold(customer_id))
            committed = [c for c in await self._commit_many(plans) if c[1]]
            await self.store.sync_members_many([(cid, applied) for cid, applied, _ in committed])
            return await self._egress(committed)

    async def _commit_many(self, plans: Sequence[Plan]) -> list[tuple[str, list[MembershipChange], Cause]]:
        now = self.clock()
        decided = [(p, p.decide(p.snapshot, now)) for p in plans]
        todo = [(p, changes) for p, changes in decided if changes]
        results = await self.store.commit_many([(p.snapshot, changes) for p, changes in todo], now)
        committed = []
        for (p, _), applied in zip(todo, results, strict=True):
            if applied is None:  # the customer changed since it was read: retry it alone
                COMMIT_CONFLICTS.inc()
                applied = await self._commit(await self.store.read(p.snapshot.customer_id), p.decide)
            committed.append((p.snapshot.customer_id, applied, p.cause))
        return committed

    async def _commit(self, snapshot: CustomerSnapshot, decider: Decider) -> list[MembershipChange]:
        for _ in range(MAX_ATTEMPTS):
            now = self.clock()
            changes = decider(snapshot, now)
            if not changes:
                return []
            applied = (await self.store.commit_many([(snapshot, changes)], now))[0]
            if applied is not None:
                return applied
            COMMIT_CONFLICTS.inc()
            snapshot = await self.store.read(snapshot.customer_id)
        raise CommitConflictError(f"no stable version after {MAX_ATTEMPTS} attempts")

    async def _egress(
        self, committed: list[tuple[str, list[MembershipChange], Cause]]
    ) -> list[MembershipChanged]:
        """Fail closed at the door: a join whose consent lapsed since the commit is undone, not announced."""
        # Only joins that need consent are re-checked: a segment requiring no purpose has none to lapse.
        joining = [cid for cid, applied, _ in committed if any(c.required_purposes for c in applied)]
        fresh = {s.customer_id: s for s in await self.store.read_many(joining)} if joining else {}
        now, messages = self.clock(), []
        for customer_id, applied, cause in committed:
            if customer_id in fresh:
                applied = await self._drop_lapsed(fresh[customer_id], applied, now)
            messages += [self._message(customer_id, c, cause) for c in applied]
            for c in applied:
                MEMBERSHIP_CHANGES.labels(c.action, c.reason).inc()
        await self.publisher.publish(messages)
        return messages

    async def _drop_lapsed(
        self, fresh: CustomerSnapshot, applied: list[MembershipChange], now: float
    ) -> list[MembershipChange]:
        lapsed = [
            c
            for c in applied
            if c.action == "joined" and not fresh.consent.all_effective(c.required_purposes, now)
        ]
        if lapsed:
            log.warning(
                "undid joins whose consent lapsed", extra={"segments": [c.segment_id for c in lapsed]}
            )
            await self._undo(fresh, lapsed)
        return [c for c in applied if c not in lapsed]

    async def _undo(self, snapshot: CustomerSnapshot, joins: list[MembershipChange]) -> None:
        def leave(snap: CustomerSnapshot, now: float) -> list[MembershipChange]:
            return [
                MembershipChange(c.segment_id, "left", snap.consent.why_not(c.required_purposes, now) or "")
                for c in joins
                if c.segment_id in snap.segments
            ]

        undone = await self._commit(snapshot, leave)
        await self.store.sync_members(snapshot.customer_id, undone)

    @staticmethod
    def _message(customer_id: str, change: MembershipChange, cause: Cause) -> MembershipChanged:
        return MembershipChanged(
            event_id=new_event_id(),
            segment_id=change.segment_id,
            customer_id=customer_id,
            action=change.action,  # type: ignore[arg-type]
            reason=change.reason,  # type: ignore[arg-type]
            cause_event_id=cause.event_id,
            cause_at=cause.at,
            at=datetime.now(UTC),
        )
