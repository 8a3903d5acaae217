"""Admission waits, eviction never does: MembershipService with an in-memory barrier, on Redis.

A join that needs consent stays in the outbox until the barrier passes, then consent is checked
again at the door; a `left` is published while the barrier is still closed."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Collection, Sequence
from datetime import UTC, datetime

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError

from services.segmenter.adapters.redis_keys import KeyLayout
from services.segmenter.adapters.redis_store import RedisCustomerStore
from services.segmenter.domain.consent import PurposeConsent
from services.segmenter.domain.customer import EventWrite
from services.segmenter.domain.membership import ON_CONSENT
from services.segmenter.domain.ports import ConsentBarrier
from services.segmenter.domain.segments import SegmentRegistry
from services.segmenter.membership_service import Cause, MembershipService
from services.segmenter.membership_state import AnnouncedMembership
from services.segmenter.reconcile import AnnouncedReconciler
from shared.events import MembershipChanged
from shared.supervise import within
from tests.integration.segmenter.conftest import outbox_of, wait_until
from tests.support import TEST_PSEUDONYM_KEY
from tests.unit.segmenter.test_membership import segment

MAIL = segment("mail", "event_count >= 1", "marketing_email")
OPEN = segment("open", "event_count >= 1")
SEGMENTS = {s.id: s for s in (MAIL, OPEN)}


class GateBarrier(ConsentBarrier):
    """Closed until the test opens it."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.asked: list[list[str]] = []
        self.drops = 0  # connections to drop first, as a stale one does after a Redis restart

    async def settled(self, customer_ids: Collection[str]) -> None:
        self.asked.append(sorted(customer_ids))
        if self.drops:
            self.drops -= 1
            raise RedisConnectionError("Connection closed by server.")
        await self.gate.wait()


class StubbornBarrier(GateBarrier):
    """Drops the first cancel of its wait, as a redis-py call can on Python 3.11 (see
    shared.supervise.cancel_until_done)."""

    def __init__(self) -> None:
        super().__init__()
        self.dropped = False

    async def settled(self, customer_ids: Collection[str]) -> None:
        self.asked.append(sorted(customer_ids))
        while True:
            try:
                await self.gate.wait()
                return
            except asyncio.CancelledError:
                if self.dropped:
                    raise
                self.dropped = True


class RecordingPublisher:
    def __init__(self) -> None:
        self.sent: list[MembershipChanged] = []

    async def publish(
        self, changes: Sequence[MembershipChanged], encoded: Sequence[bytes] | None = None
    ) -> list[MembershipChanged]:
        self.sent.extend(changes)
        return list(changes)


class AckedThenLost:
    """Publishes, then (while `lose`) fails as a worker that dies before clearing its outbox."""

    def __init__(self, publisher: RecordingPublisher) -> None:
        self.publisher = publisher
        self.lose = False

    async def publish(
        self, changes: Sequence[MembershipChanged], encoded: Sequence[bytes] | None = None
    ) -> list[MembershipChanged]:
        sent = await self.publisher.publish(changes, encoded)
        if self.lose and sent:
            raise RuntimeError("acknowledged, then lost before the outbox was cleared")
        return sent


@pytest.fixture
async def parts(redis_url: str) -> AsyncIterator[tuple[RedisCustomerStore, MembershipService, GateBarrier]]:
    namespace = f"sw:t{uuid.uuid4().hex[:10]}."
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    store = RedisCustomerStore(client, KeyLayout(namespace), TEST_PSEUDONYM_KEY)
    barrier = GateBarrier()

    def purposes(segment_id: str) -> tuple[str, ...] | None:
        found = SEGMENTS.get(segment_id)
        return None if found is None else found.required_purposes

    membership = MembershipService(
        store,
        RecordingPublisher(),
        purposes,
        lambda *_: None,
        barrier=barrier,
    )
    yield store, membership, barrier
    await membership.close()
    async for key in client.scan_iter(f"{namespace}*"):
        await client.delete(key)
    await client.aclose()  # type: ignore[attr-defined]  # types-redis predates aclose


async def _consent(
    store: RedisCustomerStore, membership: MembershipService, status: str, seq: int, customer: str = "c-1"
) -> list[MembershipChanged]:
    state = PurposeConsent(status, None, datetime.now(UTC).timestamp(), seq)
    snapshot = (await store.apply_consent(customer, {"marketing_email": state})).snapshot
    return await membership.reconcile(snapshot, [MAIL, OPEN], ON_CONSENT, Cause(f"e{seq}", None))


async def _click(store: RedisCustomerStore, customer: str = "c-1") -> None:
    at = datetime.now(UTC).timestamp()
    await store.apply_events([EventWrite(0, 1, customer, f"ev-{customer}", "click", at, None, {})], [])


async def _quiet(membership: MembershipService) -> None:
    await asyncio.gather(*membership._releases)


def _mail(membership: MembershipService, customer: str = "c-1") -> list[tuple[str, str]]:
    sent = membership.publisher.sent  # type: ignore[attr-defined]
    return [(m.action, m.reason) for m in sent if m.segment_id == "mail" and m.customer_id == customer]


async def test_a_withdrawal_is_announced_while_the_barrier_is_closed(parts: tuple) -> None:
    store, membership, barrier = parts
    await _click(store)
    barrier.gate.set()
    await _consent(store, membership, "granted", 1)
    await _quiet(membership)
    assert _mail(membership) == [("joined", "consent_granted")]

    barrier.gate.clear()  # from now on every admission waits
    await _click(store, "c-2")
    await _consent(store, membership, "granted", 1, "c-2")
    assert _mail(membership, "c-2") == [] and membership._releases, "the barrier is closed"
    published = await _consent(store, membership, "denied", 2)
    assert [(m.segment_id, m.action, m.reason) for m in published] == [("mail", "left", "consent_withdrawn")]
    assert _mail(membership)[-1] == ("left", "consent_withdrawn")


async def test_a_join_waits_and_an_opt_out_meanwhile_withholds_it(parts: tuple) -> None:
    store, membership, barrier = parts
    await _click(store)
    snapshot = await store.read("c-1")
    await membership.reconcile(snapshot, [MAIL, OPEN], ON_CONSENT, Cause("ev-1", None))
    assert [(m.segment_id, m.action) for m in membership.publisher.sent] == [("open", "joined")]  # at once

    assert await _consent(store, membership, "granted", 1) == []
    assert (await store.read("c-1")).segments == {"mail", "open"} and barrier.asked == [["c-1"]]
    assert _mail(membership) == [], "a join went out before the barrier passed"
    assert await _consent(store, membership, "denied", 2) == []  # never announced, so no leave either
    barrier.gate.set()
    await _quiet(membership)
    assert _mail(membership) == [] and await outbox_of(store, "c-1") == []
    assert (await store.read("c-1")).segments == {"open"}


async def test_an_admitted_join_goes_out_once_the_barrier_passes(parts: tuple) -> None:
    store, membership, barrier = parts
    await _click(store)
    await _consent(store, membership, "granted", 1)
    await membership.flush_outbox("c-1")  # a relay meanwhile neither publishes nor waits twice
    assert _mail(membership) == [] and len(barrier.asked) == 1
    barrier.gate.set()
    await _quiet(membership)
    assert _mail(membership) == [("joined", "consent_granted")]
    assert await outbox_of(store, "c-1") == []


async def test_a_dropped_connection_while_admitting_is_waited_out_not_left_to_the_sweep(parts: tuple) -> None:
    store, membership, barrier = parts
    barrier.drops = 1
    barrier.gate.set()
    await _click(store)
    await _consent(store, membership, "granted", 1)
    await _quiet(membership)
    assert _mail(membership) == [("joined", "consent_granted")] and len(barrier.asked) == 2
    assert await outbox_of(store, "c-1") == []


async def test_a_reconcile_meanwhile_leaves_a_waiting_join_to_its_outbox(parts: tuple) -> None:
    """A worker reconciles a partition (taken over, or kept through a rebalance that revoked
    everything first) while a member's join waits at the barrier: it must not announce the join
    itself (that skips the barrier), or the leave an opt-out queues next is never announced, the
    outbox having never sent its join (the scale-out test saw such joins left without a `left`)."""
    store, membership, barrier = parts
    registry = SegmentRegistry()
    registry.put(MAIL)
    registry.put(OPEN)
    unused = None  # the settings: only loading the announced state from the topic reads them
    reconciler = AnnouncedReconciler(unused, store, registry, membership, membership.publisher)  # type: ignore[arg-type]
    await _click(store)
    await _consent(store, membership, "granted", 1)
    assert (await store.read("c-1")).segments == {"mail", "open"} and _mail(membership) == []
    announced = AnnouncedMembership()
    announced.load([])
    announced.observe(membership.publisher.sent)  # what was announced so far: `open` joined
    assert await reconciler._chunk(announced, ["c-1"]) == 0, "the reconcile announced the waiting join"

    await _consent(store, membership, "denied", 2)
    barrier.gate.set()
    await _quiet(membership)
    assert _mail(membership) == [] and await outbox_of(store, "c-1") == []
    assert (await store.read("c-1")).segments == {"open"}


async def test_a_join_kept_at_the_barrier_through_a_handover_is_not_left_by_the_next_owner(
    parts: tuple,
) -> None:
    """A clean rebalance: worker A keeps a join at its barrier, the partition moves to worker B
    (same Redis), and B reads an opt-out of the customer before admitting the join. Without the
    hand-over B took the join for a crash's leftover and announced a `left` without a `joined`."""
    store, old_owner, _ = parts
    await _click(store)
    await _consent(store, old_owner, "granted", 1)
    await _click(store, "c-2")
    await _consent(store, old_owner, "granted", 1, "c-2")
    assert _mail(old_owner) == [] and await outbox_of(store, "c-1"), "the join waits in the outbox"
    await old_owner.hand_over(lambda customer: True)  # the revocation
    opened = GateBarrier()
    opened.gate.set()
    publisher = AckedThenLost(old_owner.publisher)
    purposes = old_owner.required_purposes
    new_owner = MembershipService(store, publisher, purposes, lambda *_: None, barrier=opened)
    try:
        await _consent(store, new_owner, "denied", 2)
        assert _mail(old_owner) == [], "the leave of a join no one announced was announced"
        # c-2's handed-over join goes out, and the worker fails before the outbox is cleared (as a
        # crash would): its mark went first, so the leave that follows is announced.
        publisher.lose = True
        await new_owner.flush_outbox("c-2")
        await _quiet(new_owner)
        assert _mail(old_owner, "c-2") == [("joined", "consent_granted")] and await outbox_of(store, "c-2")
        publisher.lose = False
        await _consent(store, new_owner, "denied", 2, "c-2")
        assert _mail(old_owner, "c-2") == [("joined", "consent_granted"), ("left", "consent_withdrawn")]
    finally:
        await new_owner.close()
    assert await outbox_of(store, "c-1") == await outbox_of(store, "c-2") == []
    assert (await store.read("c-1")).segments == {"open"}


async def test_a_close_ends_a_waiting_join_whose_task_dropped_a_cancel(parts: tuple) -> None:
    """The stop must not wait for the barrier (it may never pass): the join stays in the outbox."""
    store, membership, _ = parts
    membership.barrier = barrier = StubbornBarrier()
    await _click(store)
    await _consent(store, membership, "granted", 1)
    await wait_until(lambda: barrier.asked, 10.0, "the join to wait at the barrier")
    await within(10.0, membership.close())
    assert barrier.dropped and _mail(membership) == []
    assert [json.loads(m)["action"] for m in await outbox_of(store, "c-1")] == ["joined"]
