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
from services.segmenter.adapters.redis_store import Committed, CustomerSnapshot, Pending, RedisCustomerStore
from services.segmenter.domain.features import rule_features
from services.segmenter.domain.membership import Assign, MembershipChange, Trigger, decide
from services.segmenter.domain.segments import Segment
from services.segmenter.locks import KeyedLocks
from services.segmenter.metrics import COMMIT_CONFLICTS, EVALUATION_SECONDS, MEMBERSHIP_CHANGES
from shared.events import MembershipChanged, new_event_id
from shared.failpoints import failpoint

log = logging.getLogger(__name__)
MAX_ATTEMPTS = 20
Decider = Callable[[CustomerSnapshot, float], list[MembershipChange]]
# One customer on its way out: the changes just applied, and its outbox (JSON messages, in order).
Outgoing = tuple[str, list[MembershipChange], list[str]]


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
        required_purposes: Callable[[str], tuple[str, ...] | None],
        assign: Assign,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.publisher = publisher
        self.required_purposes = required_purposes  # of a live segment; None once it is gone
        self.assign = assign  # the model scorer of model-based segments
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
            changes = decide(candidates, features, snap.consent, snap.segments, now, trigger, self.assign)
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
        """Forget the customer's features, consent and segments and queue every leave in one step,
        then announce them."""
        async with self.locks.hold(customer_id):
            for _ in range(MAX_ATTEMPTS):
                segments = sorted((await self.store.read(customer_id)).segments)
                left = [MembershipChange(s, "left", "erased") for s in segments]
                messages = [(c.segment_id, self._message(customer_id, c, cause)) for c in left]
                outbox = await self.store.erase(customer_id, messages)
                if outbox is not None:
                    await self.store.sync_members(customer_id, left)
                    return await self._egress([(customer_id, left, outbox)])
                COMMIT_CONFLICTS.inc()  # the segments changed since the read (another worker)
        raise CommitConflictError(f"no stable segments to erase after {MAX_ATTEMPTS} attempts")

    async def flush_outbox(self, customer_id: str) -> list[MembershipChanged]:
        """Publish what a crashed worker committed but never got acknowledged."""
        async with self.locks.hold(customer_id):
            return await self._egress([(customer_id, [], await self.store.outbox(customer_id))])

    async def apply_many(self, plans: Sequence[Plan]) -> list[MembershipChanged]:
        """Under the customers' locks: decide, commit, sync member sets, publish, each step one
        pipeline for all customers (one plan per customer)."""
        async with AsyncExitStack() as stack:
            for customer_id in sorted({p.snapshot.customer_id for p in plans}):
                await stack.enter_async_context(self.locks.hold(customer_id))
            committed = [c for c in await self._commit_many(plans) if c[1] or c[2]]
            failpoint("segmenter.after_slot_commit")
            await self.store.sync_members_many([(cid, applied) for cid, applied, _ in committed])
            failpoint("segmenter.after_member_sync")
            return await self._egress(committed)

    async def _commit_many(self, plans: Sequence[Plan]) -> list[Outgoing]:
        now = self.clock()
        decided = [(p, p.decide(p.snapshot, now)) for p in plans]
        todo = [
            (p, self._pending(p.snapshot.customer_id, changes, p.cause)) for p, changes in decided if changes
        ]
        results = await self.store.commit_many([(p.snapshot, pending) for p, pending in todo], now)
        outgoing = []
        for (p, _), result in zip(todo, results, strict=True):
            if result is None:  # the customer changed since it was read: retry it alone
                COMMIT_CONFLICTS.inc()
                result = await self._commit(await self.store.read(p.snapshot.customer_id), p.decide, p.cause)
            outgoing.append((p.snapshot.customer_id, result.applied, result.outbox))
        return outgoing

    async def _commit(self, snapshot: CustomerSnapshot, decider: Decider, cause: Cause | None) -> Committed:
        """Commit one customer's changes, re-reading on conflict; no cause means no announcement."""
        for _ in range(MAX_ATTEMPTS):
            now = self.clock()
            changes = decider(snapshot, now)
            if not changes:
                return Committed([], [])
            pending = self._pending(snapshot.customer_id, changes, cause)
            result = (await self.store.commit_many([(snapshot, pending)], now))[0]
            if result is not None:
                return result
            COMMIT_CONFLICTS.inc()
            snapshot = await self.store.read(snapshot.customer_id)
        raise CommitConflictError(f"no stable version after {MAX_ATTEMPTS} attempts")

    def _pending(
        self, customer_id: str, changes: list[MembershipChange], cause: Cause | None
    ) -> list[Pending]:
        return [(c, self._message(customer_id, c, cause) if cause else "") for c in changes]

    async def _egress(self, outgoing: list[Outgoing]) -> list[MembershipChanged]:
        """Publish each customer's outbox in order, then clear it. Fail closed at the door: a join
        whose consent lapsed since the commit (or whose segment is gone) is withheld, and undone."""
        decoded = [(cid, [MembershipChanged.model_validate_json(m) for m in box]) for cid, _, box in outgoing]
        joining = sorted({cid for cid, messages in decoded if any(m.action == "joined" for m in messages)})
        fresh = {s.customer_id: s for s in await self.store.read_many(joining)} if joining else {}
        now, published = self.clock(), []
        for customer_id, messages in decoded:
            withheld = [
                m for m in messages if m.action == "joined" and not self._may_join(fresh[customer_id], m, now)
            ]
            if withheld:
                log.warning(
                    "withheld joins whose consent lapsed",
                    extra={"segments": [m.segment_id for m in withheld]},
                )
                await self._undo(fresh[customer_id], {m.segment_id for m in withheld})
            published += [m for m in messages if m not in withheld]
        await self.publisher.publish(published)
        failpoint("segmenter.after_publish")
        await self.store.clear_outbox([(cid, box) for cid, _, box in outgoing])
        for m in published:
            MEMBERSHIP_CHANGES.labels(m.action, m.reason).inc()
        return published

    def _may_join(self, fresh: CustomerSnapshot, message: MembershipChanged, now: float) -> bool:
        purposes = self.required_purposes(message.segment_id)
        if purposes is None or message.segment_id not in fresh.segments:
            return False  # the segment is gone, or the customer already left it again
        return fresh.consent.all_effective(purposes, now)

    async def _undo(self, snapshot: CustomerSnapshot, segment_ids: set[str]) -> None:
        """Silently leave segments whose join was withheld (it was never announced)."""

        def leave(snap: CustomerSnapshot, now: float) -> list[MembershipChange]:
            changes = []
            for segment_id in sorted(segment_ids & snap.segments):
                purposes = self.required_purposes(segment_id)
                gap = "segment_deleted" if purposes is None else snap.consent.why_not(purposes, now)
                if gap:
                    changes.append(MembershipChange(segment_id, "left", gap))
            return changes

        undone = await self._commit(snapshot, leave, None)
        await self.store.sync_members(snapshot.customer_id, undone.applied)

    @staticmethod
    def _message(customer_id: str, change: MembershipChange, cause: Cause) -> str:
        return MembershipChanged(
            event_id=new_event_id(),
            segment_id=change.segment_id,
            customer_id=customer_id,
            action=change.action,  # type: ignore[arg-type]
            reason=change.reason,  # type: ignore[arg-type]
            cause_event_id=cause.event_id,
            cause_at=cause.at,
            at=datetime.now(UTC),
        ).model_dump_json()
