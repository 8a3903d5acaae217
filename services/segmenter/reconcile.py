"""Announces the difference between what campaign tools were told and what Redis holds now.

Run for partitions a worker has just rebuilt or taken over: every (segment, customer) whose
last announced action is `joined` (from `segment.membership.state`) and that is not a member
in Redis gets a `left` with the reason that holds now (`segment_deleted`, `consent_withdrawn`
or `consent_expired` when consent is not effective, else `rule_unmatched`); every member in
Redis not announced as joined gets a `joined` (`rule_matched`) if its consent is effective now.
Segments with changes still in the customer's outbox (joins waiting for the consent barrier) are
left to it: the outbox announces them.
Each customer is compared under its lock, after its outbox (a crashed owner's leftovers) went out,
and the member sets of the segments it is in or was announced in follow its slot first.
Between two chunks of customers the pass gives way to waiting live input (pacing.py).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from contextlib import AsyncExitStack
from datetime import UTC, datetime

from services.segmenter.adapters.kafka_partitions import KafkaPartitionReader
from services.segmenter.adapters.kafka_publisher import KafkaMembershipPublisher, customer_partition
from services.segmenter.adapters.redis_store import RedisCustomerStore
from services.segmenter.domain.customer import CustomerSnapshot
from services.segmenter.domain.segments import SegmentRegistry
from services.segmenter.membership_service import MembershipService
from services.segmenter.membership_state import AnnouncedMembership
from services.segmenter.metrics import MEMBERSHIP_CHANGES
from services.segmenter.pacing import RECONCILE, Pacer
from services.segmenter.settings import SegmenterSettings
from shared.events import MembershipChanged, new_event_id
from shared.kafka import topic_names
from shared.topics import SEGMENT_MEMBERSHIP_STATE

log = logging.getLogger(__name__)
CHUNK = 200


class AnnouncedReconciler:
    def __init__(
        self,
        settings: SegmenterSettings,
        store: RedisCustomerStore,
        registry: SegmentRegistry,
        membership: MembershipService,
        publisher: KafkaMembershipPublisher,
        pacer: Pacer | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.registry = registry
        self.membership = membership
        self.publisher = publisher
        self.pacer = pacer or Pacer()  # between two chunks live input goes first (pacing.py)

    async def reconcile(self, partitions: Sequence[int]) -> int:
        """Make the announced membership of these partitions agree with Redis; messages published."""
        n = self.publisher.partitions
        announced = AnnouncedMembership(lambda c: customer_partition(c, n) in partitions)
        self.publisher.observers.append(announced.observe)
        try:
            await self._load(announced, partitions)
            customers = set(announced.joined)
            for partition in partitions:
                customers.update([c async for c in self.store.known_customers(partition)])
            ordered, published = sorted(customers), 0
            # From now on only the customers still to compare: a chunk compared is forgotten.
            announced.wanted = customers.__contains__
            with self.pacer.begin(RECONCILE, len(ordered)) as pace:
                for i in range(0, len(ordered), CHUNK):
                    chunk = ordered[i : i + CHUNK]
                    await pace.step(len(chunk))  # no lock held: the last chunk's are released
                    published += await self._chunk(announced, chunk)
                    customers.difference_update(chunk)
                    announced.forget(chunk)
        finally:
            self.publisher.observers.remove(announced.observe)
        log.info(
            "reconciled announced membership", extra={"partitions": list(partitions), "published": published}
        )
        return published

    async def _load(self, announced: AnnouncedMembership, partitions: Sequence[int]) -> None:
        topic = topic_names(self.settings).name(SEGMENT_MEMBERSHIP_STATE)
        reader = KafkaPartitionReader(self.settings, topic, "segwarden-segmenter-announced", partitions)
        announced.load(await reader.read_once())

    async def _chunk(self, announced: AnnouncedMembership, customer_ids: list[str]) -> int:
        lengths = await self.store.outbox_lengths(customer_ids)
        for customer_id, length in zip(customer_ids, lengths, strict=True):
            if length:
                await self.membership.flush_outbox(customer_id)
        async with AsyncExitStack() as stack:
            for customer_id in customer_ids:
                await stack.enter_async_context(self.membership.locks.hold(customer_id))
            # A join still waiting for the consent barrier in the outbox (after the flush) is in
            # Redis and not announced yet; announcing it here too would skip the barrier, and the
            # outbox, not knowing, would later drop the `left` of the join it never sent (the
            # scale-out test saw a worker re-reconcile partitions it kept through a rebalance and
            # leave such joins without a `left` on the stream).
            pending = await self.membership.pending_segments(customer_ids)
            now, messages, members = time.time(), [], []
            for snapshot in await self.store.read_many(customer_ids):
                joined = announced.segments_of(snapshot.customer_id)
                skip = pending.get(snapshot.customer_id, set())
                messages += self._differences(snapshot, joined, now, skip)
                # The member sets follow the slot before anything is announced from it: a worker
                # killed between a slot commit and its member-set step (the rebuild's silent
                # commits leave no outbox to repair from) left them behind, and a `left` sent
                # while GET /v1/segments/{id}/members still lists the customer would lie.
                members.append(
                    (snapshot.customer_id, {s: s in snapshot.segments for s in joined | snapshot.segments})
                )
            await self.store.set_members_many(members)
            sent = await self.publisher.publish(messages)
        for m in sent:
            MEMBERSHIP_CHANGES.labels(m.action, m.reason).inc()
        return len(sent)

    def _differences(
        self, snapshot: CustomerSnapshot, joined: set[str], now: float, pending: set[str]
    ) -> list[MembershipChanged]:
        """The changes that make the announced membership agree with the slot, but for `pending`
        segments: their outbox announces them."""
        out = []
        for segment_id in sorted((joined - snapshot.segments) - pending):
            segment = self.registry.get(segment_id)
            if segment is None:
                reason = "segment_deleted"
            else:
                reason = snapshot.consent.why_not(segment.required_purposes, now) or "rule_unmatched"
            out.append(_message(snapshot.customer_id, segment_id, "left", reason))
        for segment_id in sorted((snapshot.segments - joined) - pending):
            segment = self.registry.get(segment_id)
            if segment is not None and snapshot.consent.all_effective(segment.required_purposes, now):
                out.append(_message(snapshot.customer_id, segment_id, "joined", "rule_matched"))
        return out


def _message(customer_id: str, segment_id: str, action: str, reason: str) -> MembershipChanged:
    return MembershipChanged(
        event_id=new_event_id(),
        segment_id=segment_id,
        customer_id=customer_id,
        action=action,  # type: ignore[arg-type]
        reason=reason,  # type: ignore[arg-type]
        cause_event_id=None,
        cause_at=None,
        at=datetime.now(UTC),
    )
