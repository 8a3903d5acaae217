"""Redelivery converges, in-process against the real Redis: features applied once per offset with
bounded memory, retries re-planned from the stored state, leftovers repaired and their undo announced,
and the delete job spares a segment defined again under the same id."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
from aiokafka.structs import ConsumerRecord

from services.segmenter.adapters.redis_keys import SEGMENT
from services.segmenter.adapters.redis_store import RedisCustomerStore
from services.segmenter.domain.consent import PurposeConsent
from services.segmenter.domain.customer import EventWrite
from services.segmenter.domain.erasure import ErasureMark
from services.segmenter.domain.membership import ON_EVENT
from services.segmenter.domain.segments import Segment, SegmentRegistry
from services.segmenter.handlers import StreamHandlers
from services.segmenter.membership_service import NO_CAUSE, MembershipService
from services.segmenter.sweeps import Sweeper
from shared import failpoints
from shared.events import (
    ConsentChanged,
    CustomerEvent,
    MembershipChanged,
    SegmentDefinition,
    new_event_id,
    utcnow,
)
from shared.failpoints import InjectedFaultError
from tests.integration.segmenter.conftest import outbox_of
from tests.support import present


class Published:
    """Stands in for the Kafka publisher: what would have been announced, in order."""

    def __init__(self) -> None:
        self.messages: list[MembershipChanged] = []

    async def publish(
        self, changes: Sequence[MembershipChanged], encoded: Sequence[bytes] | None = None
    ) -> None:
        self.messages += changes

    def actions(self, customer: str, segment: str) -> list[str]:
        return [m.action for m in self.messages if (m.customer_id, m.segment_id) == (customer, segment)]


def segment(segment_id: str, rule: str, *purposes: str, version: int = 1) -> Segment:
    definition = SegmentDefinition(
        event_id=new_event_id(),
        segment_id=segment_id,
        name=segment_id,
        rule=rule,
        required_purposes=purposes,
        version=version,
        updated_at=utcnow(),
    )
    return Segment.from_definition(definition)


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def disarm() -> Iterator[None]:
    yield
    failpoints.configure("")


class World:
    def __init__(self, store: RedisCustomerStore) -> None:
        self.store = store
        self.registry = SegmentRegistry()
        self.published = Published()
        self.clock = Clock()
        self.membership = MembershipService(
            store,
            self.published,
            self._purposes,
            lambda *_: None,
            self.clock,
        )

    def _purposes(self, segment_id: str) -> tuple[str, ...] | None:
        s = self.registry.get(segment_id)
        return None if s is None else s.required_purposes

    async def members(self, segment_id: str) -> set[str]:
        return {c async for c in self.store.index.members(self.store.keys.members(segment_id))}

    async def grant(self, customer: str, purpose: str, expires_at: float | None = None) -> None:
        state = PurposeConsent("granted", expires_at, self.clock.now - 1)
        await self.store.apply_consent(customer, {purpose: state})


@pytest.fixture
def world(store: RedisCustomerStore) -> World:
    return World(store)


def write(
    offset: int, customer: str = "c-1", event_id: str | None = None, amount: float = 10.0
) -> EventWrite:
    return EventWrite(0, offset, customer, event_id or new_event_id(), "purchase", time.time(), amount, {})


async def test_each_offset_is_applied_once_with_no_key_per_event_and_no_ttl(
    store: RedisCustomerStore,
) -> None:
    results = present(await store.apply_events([write(offset) for offset in range(100)], [(0, "c-1")]))
    assert all(applied for applied, _ in results)
    keys = {key async for key in store.client.scan_iter(store.keys.customer("c-1", "*"))}
    assert keys == {store.keys.state("c-1")}  # one hash: nothing grows per event
    assert [await store.client.ttl(key) for key in keys] == [-1]  # no window to age out of

    # A replay of old offsets, however late, is a duplicate and still returns the stored state:
    # the customer's after the batch (one Lua step applies all of a customer's events in it).
    again = present(await store.apply_events([write(3), write(99), write(100, amount=5.0)], []))
    assert [applied for applied, _ in again] == [False, False, True]
    assert again[0][1] is again[2][1] and again[0][1].features["purchases"] == "101"
    assert not any(f.startswith("_") for f in again[0][1].features)  # bookkeeping is not a feature


async def test_a_topic_created_again_is_told_from_a_redelivery_by_the_record_timestamp(
    store: RedisCustomerStore,
) -> None:
    def stamped(offset: int, at_ms: int) -> EventWrite:
        return EventWrite(0, offset, "c-1", new_event_id(), "purchase", time.time(), 10.0, {}, at_ms)

    assert all(
        applied
        for applied, _ in present(await store.apply_events([stamped(i, 1_000 + i) for i in range(5)], []))
    )
    # The broker forgot the topic (the embedded one keeps nothing): offsets start at 0 again, later.
    fresh = present(await store.apply_events([stamped(0, 9_000), stamped(1, 9_001)], []))
    assert [applied for applied, _ in fresh] == [True, True]
    # Redeliveries of the new topic's records still count once (the old topic's are gone with it).
    again = present(await store.apply_events([stamped(0, 9_000), stamped(1, 9_001), stamped(2, 9_002)], []))
    assert [applied for applied, _ in again] == [False, False, True]
    assert again[2][1].features["purchases"] == "8"


async def test_a_recently_repeated_event_id_is_a_duplicate_and_erasure_refuses_older_events(
    store: RedisCustomerStore,
) -> None:
    ids = [new_event_id() for _ in range(6)]
    # A producer's retry lands shortly after the original (up to RECENT events of the customer later).
    writes = [write(i, event_id=e) for i, e in enumerate(ids)] + [write(6, event_id=ids[2])]
    results = present(await store.apply_events([*writes, write(7, event_id=ids[0])], []))
    assert [applied for applied, _ in results] == [True] * 6 + [False, True]  # ids[0] is 6 events back
    old = replace(write(7), occurred_at=time.time() - 1)  # occurred before the erasure
    assert await store.erase("c-1", [], ErasureMark(int(time.time() * 1000))) is not None
    assert (await store.read("c-1")).features == {}
    assert await store.apply_events([old], [(0, "c-1")]) == [None]  # refused by the marker
    assert not await store.holds("c-1") and await store.known_scores(0, ["c-1"]) == [None]
    assert present(await store.apply_events([write(8)], []))[0][0] is True  # a new event after it


def buyers_and_a_purchase(world: World) -> tuple[StreamHandlers, ConsumerRecord]:
    """A `buyers` segment, the event handlers over the world, and c-1's first purchase as a record."""
    world.registry.put(segment("buyers", "purchase_count >= 1"))
    handlers = StreamHandlers(world.store, world.registry, world.membership, None, None)  # type: ignore[arg-type]
    event = CustomerEvent(
        event_id=new_event_id(),
        customer_id="c-1",
        type="purchase",
        occurred_at=datetime.now(UTC),
        source="test",
        attributes={"amount": 20, "currency": "EUR"},
    )
    return handlers, ConsumerRecord("t", 0, 7, 0, 0, b"c-1", event.to_bytes(), None, 0, 0, ())


async def test_a_retry_after_a_failure_mid_batch_evaluates_the_events(world: World, disarm: None) -> None:
    handlers, record = buyers_and_a_purchase(world)
    failpoints.configure("segmenter.events_mid_batch=raise")
    with pytest.raises(InjectedFaultError):
        await handlers.on_events([record])
    assert (await world.store.read("c-1")).features["purchases"] == "1"
    await handlers.on_events([record])  # what stream_app.with_retry does
    assert (await world.store.read("c-1")).segments == {"buyers"} and await world.members("buyers") == {"c-1"}
    assert world.published.actions("c-1", "buyers") == ["joined"]
    assert (await world.store.read("c-1")).features["purchases"] == "1"


async def test_a_failure_after_the_slot_commit_is_repaired_by_the_retry(world: World, disarm: None) -> None:
    handlers, record = buyers_and_a_purchase(world)
    failpoints.configure("segmenter.after_slot_commit=raise")
    with pytest.raises(InjectedFaultError):
        await handlers.on_events([record])
    assert await world.members("buyers") == set() and world.published.messages == []
    await handlers.on_events([record])
    assert await world.members("buyers") == {"c-1"} and world.published.actions("c-1", "buyers") == ["joined"]
    assert await outbox_of(world.store, "c-1") == []


class NoExpiry:
    async def track(self, partition: int, customer_id: str) -> None:
        return None


async def test_a_withdrawal_failing_after_its_slot_commit_is_announced_on_the_retry(
    world: World, disarm: None
) -> None:
    world.registry.put(segment("mail", "purchase_count >= 1", "marketing_email"))
    handlers = StreamHandlers(world.store, world.registry, world.membership, None, NoExpiry())  # type: ignore[arg-type]
    await world.grant("c-1", "marketing_email")
    results = present(await world.store.apply_events([write(1)], [(0, "c-1")]))
    await world.membership.reconcile(results[0][1], present([world.registry.get("mail")]), ON_EVENT, NO_CAUSE)
    assert await world.members("mail") == {"c-1"}
    denial = ConsentChanged(
        event_id=new_event_id(),
        customer_id="c-1",
        purpose="marketing_email",
        status="denied",
        previous_status="granted",
        reason="user",
        source="test",
        jurisdiction="GDPR",
        policy_version="2026-03",
        recorded_at=datetime.now(UTC),
        expires_at=None,
    )
    record = ConsumerRecord("t", 0, 3, 0, 0, b"c-1", denial.to_bytes(), None, 0, 0, ())
    failpoints.configure("segmenter.after_slot_commit=raise")
    with pytest.raises(InjectedFaultError):
        await handlers.on_consent_change(record)
    assert (await world.store.read("c-1")).segments == set()  # committed, neither synced nor announced
    await handlers.on_consent_change(record)  # the retry: the change is already recorded
    assert world.published.actions("c-1", "mail") == ["joined", "left"]
    assert await world.members("mail") == set() and await outbox_of(world.store, "c-1") == []


async def leftover_join(world: World, customer: str, segment_id: str) -> MembershipChanged:
    """What a worker killed after its commit (perhaps after its publish) leaves behind."""
    message = MembershipChanged(
        event_id=new_event_id(),
        segment_id=segment_id,
        customer_id=customer,
        action="joined",
        reason="rule_matched",
        cause_event_id=None,
        cause_at=None,
        at=datetime.now(UTC),
    )
    await world.store.client.hset(world.store.keys.state(customer), SEGMENT + segment_id, "1")
    await world.store.client.rpush(world.store.keys.outbox(customer), message.model_dump_json())
    return message


async def test_a_leftover_is_flushed_with_its_member_sets_even_when_nothing_is_planned(world: World) -> None:
    world.registry.put(segment("buyers", "purchase_count >= 1"))
    await world.store.apply_events([write(1)], [(0, "c-1")])
    join = await leftover_join(world, "c-1", "buyers")  # member sets never synced
    snapshot = await world.store.read("c-1")
    assert world.membership.plan(snapshot, [], ON_EVENT, NO_CAUSE) is not None
    await world.membership.reconcile(snapshot, [], ON_EVENT, NO_CAUSE)
    assert [m.event_id for m in world.published.messages] == [join.event_id]
    assert await world.members("buyers") == {"c-1"} and await outbox_of(world.store, "c-1") == []


async def test_a_withheld_leftover_join_is_undone_with_a_left(world: World) -> None:
    world.registry.put(segment("mail", "purchase_count >= 1", "marketing_email"))
    await world.store.apply_events([write(1)], [(0, "c-1")])
    await world.grant("c-1", "marketing_email", expires_at=world.clock.now - 1)  # lapsed since the crash
    join = await leftover_join(world, "c-1", "mail")
    await world.store.set_members_many([("c-1", {"mail": True})])
    await world.membership.flush_outbox("c-1")
    assert join.event_id not in {m.event_id for m in world.published.messages}  # fail closed
    assert world.published.actions("c-1", "mail") == ["left"]  # it may have gone out before the crash
    assert world.published.messages[0].reason == "consent_expired"
    assert (await world.store.read("c-1")).segments == set() and await world.members("mail") == set()
    assert await outbox_of(world.store, "c-1") == []


async def test_a_join_withheld_before_it_was_ever_published_is_undone_silently(world: World) -> None:
    world.registry.put(segment("mail", "purchase_count >= 1", "marketing_email"))
    await world.grant("c-1", "marketing_email", expires_at=world.clock.now + 5)
    results = present(await world.store.apply_events([write(1)], [(0, "c-1")]))
    commit = world.store.commit_many

    async def commit_then_expire(*args: Any, **kwargs: Any) -> Any:
        result = await commit(*args, **kwargs)
        world.clock.now += 10  # the grant expires between the commit and the egress
        return result

    world.store.commit_many = commit_then_expire  # type: ignore[method-assign]
    await world.membership.reconcile(results[0][1], present([world.registry.get("mail")]), ON_EVENT, NO_CAUSE)
    assert world.published.messages == []
    assert (await world.store.read("c-1")).segments == set() and await world.members("mail") == set()
    assert await outbox_of(world.store, "c-1") == []


async def test_the_delete_job_spares_the_members_of_a_segment_defined_again(world: World) -> None:
    for customer in ("c-1", "c-2"):
        await world.store.apply_events([write(1, customer)], [(0, customer)])
        segments: dict[str | bytes, str] = {SEGMENT + "vip": "1", SEGMENT + "old": "1"}
        await world.store.client.hset(world.store.keys.state(customer), mapping=segments)
        await world.store.set_members_many([(customer, {"vip": True, "old": True})])
    # "vip" deleted (version 3), then defined again (version 4) before its delete job ran;
    # "old" deleted for good.
    world.registry.put(segment("vip", "purchase_count >= 1", version=4))
    sweeper = Sweeper(world.store, world.registry, world.membership, lambda: [0], b"k" * 32)
    await sweeper.reevaluate({"vip", "old"}, deleted=True)
    for customer in ("c-1", "c-2"):
        assert (await world.store.read(customer)).segments == {"vip"}
        assert world.published.actions(customer, "vip") == []
        assert world.published.actions(customer, "old") == ["left"]
    assert await world.members("vip") == {"c-1", "c-2"} and await world.members("old") == set()
