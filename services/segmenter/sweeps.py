"""Periodic work over the customers of the partitions this worker owns.

The sweep re-evaluates time-sensitive segments (rules reading *_days features; grant expiries
have their own scheduler, services/segmenter/expiry.py); the compliance monitor checks every
live membership against the effective consent and evicts (and counts, as a metric that must
stay 0) any violation. Every pass here goes in chunks and, between two, gives way to waiting live
input through the injected Pacer (pacing.py), with bounded pauses.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable

from services.segmenter.domain.customer import CustomerSnapshot
from services.segmenter.domain.membership import ON_DEFINITION, ON_SWEEP, MembershipChange, Trigger
from services.segmenter.domain.ports import BarrierTimeoutError, SweptCustomerStore
from services.segmenter.domain.segments import Segment, SegmentRegistry
from services.segmenter.membership_service import NO_CAUSE, MembershipService, Plan
from services.segmenter.metrics import (
    COMPLIANCE_SCANS,
    COMPLIANCE_VIOLATIONS,
    OWNED_PARTITIONS,
    REEVALUATED_CUSTOMERS,
    REEVALUATION_PENDING_CUSTOMERS,
    SEGMENT_SIZE,
    SWEEPS,
)
from services.segmenter.pacing import COMPLIANCE, REEVALUATION, SWEEP, PacedPass, Pacer
from shared.failpoints import failpoint
from shared.pseudonym import pseudonymize

log = logging.getLogger(__name__)
CHUNK = 200
EVALUATIONS_PER_CHUNK = 5_000  # customers x segments per re-evaluation chunk (one read, one commit)
YIELD_EVALUATIONS = 500  # customers x segments evaluated between two yields to the event loop
IN_FLIGHT_S = 10.0


class Sweeper:
    def __init__(
        self,
        store: SweptCustomerStore,
        registry: SegmentRegistry,
        membership: MembershipService,
        owned: Callable[[], list[int]],
        pseudonym_key: bytes,
        trusted: Callable[[int], bool] | None = None,
        pacer: Pacer | None = None,
    ) -> None:
        self.store = store
        self.registry = registry
        self.membership = membership
        self.owned = owned
        self.pseudonym_key = pseudonym_key
        # Whether a partition's features can be trusted now (RedisRecovery.trusted): a partition
        # being rebuilt has them dropped, and its rebuild decides every segment anyway.
        self.trusted = trusted or (lambda _partition: True)
        # Between two chunks of a pass live input goes first, at a minimum pace (pacing.py).
        self.pacer = pacer or Pacer()

    async def customers(self, partition: int, pace: PacedPass, size: int = CHUNK) -> AsyncIterator[list[str]]:
        """The partition's known customers, in chunks; before each, `pace` lets live input go first."""
        chunk: list[str] = []
        async for customer_id in self.store.known_customers(partition):
            chunk.append(customer_id)
            if len(chunk) >= size:
                await pace.step(len(chunk))
                yield chunk
                chunk = []
        if chunk:
            await pace.step(len(chunk))
            yield chunk

    async def snapshots(
        self, partition: int, pace: PacedPass, size: int = CHUNK
    ) -> AsyncIterator[list[CustomerSnapshot]]:
        """The partition's known customers, read in pipelined chunks, paced as `customers`."""
        async for chunk in self.customers(partition, pace, size):
            yield await self.store.read_many(chunk)

    async def relay_outboxes(self, partition: int, pace: PacedPass) -> None:
        """Publish what a crashed worker committed but never got acknowledged."""
        async for chunk in self.customers(partition, pace):
            lengths = await self.store.outbox_lengths(chunk)
            for customer_id, length in zip(chunk, lengths, strict=True):
                if length:
                    await self.membership.flush_outbox(customer_id)

    async def sweep_once(self) -> None:
        time_segments = self.registry.time_sensitive()
        owned = self.owned()
        OWNED_PARTITIONS.set(len(owned))
        visits = 2 if time_segments else 1  # each customer's outbox, then its time-based segments
        with self.pacer.begin(SWEEP, visits * await self.store.known_count(owned)) as pace:
            for partition in owned:
                await self.relay_outboxes(partition, pace)
                if time_segments and self.trusted(partition):
                    async for chunk in self.snapshots(partition, pace):
                        await self._reconcile(chunk, time_segments, ON_SWEEP)
        segment_ids = [s.id for s in self.registry.all()]
        for segment_id, size in zip(segment_ids, await self.store.segment_sizes(segment_ids), strict=True):
            SEGMENT_SIZE.labels(segment_id).set(size)
        SWEEPS.inc()

    async def reevaluate(self, segment_ids: set[str], deleted: bool) -> None:
        """A changed segment re-evaluated (or a deleted one emptied) for the owned partitions."""
        if deleted:
            await self._empty(segment_ids)
            return
        owned = self.owned()
        total = await self.store.known_count(owned)
        REEVALUATION_PENDING_CUSTOMERS.set(total)
        # A chunk is evaluated in one go on the event loop: bounded in customers x segments, so
        # a thousand segments changed at once do not hold up an opt-out or a PUT for long.
        size = max(1, min(CHUNK, EVALUATIONS_PER_CHUNK // max(1, len(segment_ids))))
        with self.pacer.begin(REEVALUATION, total) as pace:
            for partition in owned:
                if not self.trusted(partition):
                    # Left to its rebuild: evaluated now, its customers would read as having no
                    # features and leave (`segment_changed`) only to be announced joined again.
                    continue
                async for chunk in self.snapshots(partition, pace, size):
                    failpoint("segmenter.reevaluate_mid_batch")  # read, not yet applied
                    # Looked up per chunk: a segment changed or deleted since the pass began is
                    # evaluated by its current definition (or not at all) from here on.
                    segments = [s for s in map(self.registry.get, sorted(segment_ids)) if s is not None]
                    await self._reconcile(chunk, segments, ON_DEFINITION)
                    REEVALUATION_PENDING_CUSTOMERS.dec(len(chunk))
                    REEVALUATED_CUSTOMERS.inc(len(chunk))

    async def _empty(self, segment_ids: set[str]) -> None:
        """Evict the members of deleted segments (`segment_deleted`). A segment defined again
        under the same id meanwhile (a newer version) keeps its members: whether the id is still
        deleted is decided under the customer's lock, and a customer whose eviction raced with
        the new definition is evaluated against it afterwards."""

        def still_deleted(segment_id: str) -> bool:
            return self.registry.get(segment_id) is None

        owned = self.owned()
        with self.pacer.begin(REEVALUATION, await self.store.known_count(owned)) as pace:
            for partition in owned:
                async for chunk in self.snapshots(partition, pace):
                    for snapshot in chunk:
                        await self._evict_deleted(snapshot, segment_ids, still_deleted)

    async def _evict_deleted(
        self, snapshot: CustomerSnapshot, segment_ids: set[str], still_deleted: Callable[[str], bool]
    ) -> None:
        gone = dict.fromkeys(segment_ids & snapshot.segments, "segment_deleted")
        if not gone:
            return
        await self.membership.evict(snapshot.customer_id, gone, NO_CAUSE, still_deleted)
        back = [s for s in map(self.registry.get, gone) if s is not None]
        if back:
            fresh = await self.store.read(snapshot.customer_id)
            await self.membership.reconcile(fresh, back, ON_DEFINITION, NO_CAUSE)

    async def _reconcile(
        self, chunk: list[CustomerSnapshot], segments: list[Segment], trigger: Trigger
    ) -> None:
        """One batch of customers: plans for those that change, applied in shared pipelines. The
        event loop is let go every YIELD_EVALUATIONS customer x segment evaluations: a chunk of a
        thousand segments' re-evaluation held up a segment PUT (and an opt-out) until it was done."""
        plans = []
        every = max(1, YIELD_EVALUATIONS // max(1, len(segments)))
        for i, snapshot in enumerate(chunk):
            if i % every == every - 1:
                await asyncio.sleep(0)
            plans.append(self.membership.plan(snapshot, segments, trigger, NO_CAUSE))
        await self.membership.apply_many([p for p in plans if p is not None])

    async def compliance_once(self) -> int:
        """Evict every membership without effective consent; the number of violations found."""
        violations, owned = 0, self.owned()
        with self.pacer.begin(COMPLIANCE, await self.store.known_count(owned)) as pace:
            for partition in owned:
                async for chunk in self.snapshots(partition, pace):
                    for snapshot in chunk:
                        violations += await self._check(snapshot)
        COMPLIANCE_SCANS.inc()
        return violations

    async def _check(self, snapshot: CustomerSnapshot) -> int:
        """Evict the customer's memberships without effective consent; the violations found.

        The scan's snapshot only picks who to look at: the reasons (and the count) are decided
        from the state the eviction commits on (version-checked), so a grant recorded since the
        scan keeps the member and a reason never comes from a stale read.
        """
        gaps = self._gaps(snapshot, time.time())
        if not gaps:
            return 0
        # Only a lapse the hot path has had its chance at is a violation: wait until every consent
        # change of the customer written before now has been handled here (after a takeover the
        # survivor re-reads what a killed worker had applied but not evicted on).
        settled = "consent_withdrawn" not in gaps.values() or await self._settled(snapshot.customer_id)
        violating: set[str] = set()  # as decided by the last (the committed) decision

        def leave(snap: CustomerSnapshot, now: float) -> list[MembershipChange]:
            gaps = self._gaps(snap, now)
            violating.clear()
            for segment_id, gap in gaps.items():
                segment = self.registry.get(segment_id)
                if (
                    settled
                    and segment is not None
                    and _is_violation(snap, segment.required_purposes, gap, now)
                ):
                    violating.add(segment_id)
            return [MembershipChange(s, "left", reason) for s, reason in sorted(gaps.items())]

        fresh = await self.store.read(snapshot.customer_id)
        published = await self.membership.apply_many([Plan(fresh, leave, NO_CAUSE)])
        evicted = {m.segment_id for m in published if m.action == "left" and m.reason != "segment_deleted"}
        violations = len(violating & evicted)
        if violations:
            COMPLIANCE_VIOLATIONS.inc(violations)
            subject = pseudonymize(self.pseudonym_key, snapshot.customer_id)
            segments = sorted(violating & evicted)
            log.error(
                "membership without effective consent", extra={"subject": subject, "segments": segments}
            )
        return violations

    async def _settled(self, customer_id: str) -> bool:
        """Whether the customer's consent changes written so far have all been handled (no barrier:
        assumed); False when the follower does not get there in time, so nothing is counted."""
        barrier = self.membership.barrier
        if barrier is None:
            return True
        try:
            await barrier.settled([customer_id])
        except BarrierTimeoutError:
            return False
        return True

    def _gaps(self, snapshot: CustomerSnapshot, now: float) -> dict[str, str]:
        """Segment -> leave reason for every membership the consent (or the registry) does not allow."""
        gaps = {}
        for segment_id in snapshot.segments:
            segment = self.registry.get(segment_id)
            if segment is None:
                gaps[segment_id] = "segment_deleted"
                continue
            gap = snapshot.consent.why_not(segment.required_purposes, now)
            if gap is not None:
                gaps[segment_id] = gap
        return gaps


def _is_violation(snapshot: CustomerSnapshot, purposes: tuple[str, ...], gap: str, now: float) -> bool:
    """A lapse the hot path had time to act on: not an expiry awaiting its sweep, nor a
    withdrawal recorded within the last IN_FLIGHT_S seconds whose eviction may be under way."""
    if gap != "consent_withdrawn":
        return False
    lapsed = [snapshot.consent.purposes.get(p) for p in purposes if not snapshot.consent.effective(p, now)]
    return any(state is None or now - state.recorded_at > IN_FLIGHT_S for state in lapsed)
