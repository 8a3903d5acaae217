"""The segmenter's use cases (services/segmenter/handlers.py, membership_service.py) against the
in-memory fakes of their ports (memory_store.py): what each input does to the store and what it
announces."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiokafka.structs import ConsumerRecord
from prometheus_client import REGISTRY
from pydantic import BaseModel

from services.segmenter.domain.ports import BarrierTimeoutError, ConsentPartitionMovedError
from services.segmenter.domain.segments import Segment, SegmentRegistry
from services.segmenter.handlers import DefinitionService, StreamHandlers
from services.segmenter.membership_service import MembershipService
from services.segmenter.reevaluation import SegmentReevaluator
from services.segmenter.sweeps import Sweeper
from shared.events import (
    ConsentChanged,
    ConsentStateSnapshot,
    CustomerEvent,
    PurposeState,
    SegmentDefinition,
    utcnow,
)
from tests.support import TEST_PSEUDONYM_KEY
from tests.unit.segmenter.memory_store import (
    GateBarrier,
    MemoryCustomerStore,
    MemoryDefinitionStore,
    RecordingExpiryQueue,
    RecordingProducer,
    RecordingPublisher,
    SlowAckPublisher,
    TimingOutBarrier,
    dead_letters,
)
from tests.unit.segmenter.test_membership import segment

EMAIL = "marketing_email"
MAIL = segment("mail", "event_count >= 1", EMAIL)
NEWS = segment("news", "event_count >= 1", EMAIL)
OFFERS = segment("offers", "event_count >= 1", EMAIL, "personalization")
OPEN = segment("open", "event_count >= 1")


@dataclass
class Segmenter:
    store: MemoryCustomerStore
    publisher: RecordingPublisher
    registry: SegmentRegistry
    membership: MembershipService
    handlers: StreamHandlers
    expiry: RecordingExpiryQueue
    dead: RecordingProducer
    offsets: Iterator[int]
    now: list[float]  # the use cases' clock: now[0]

    async def event(
        self,
        customer: str = "c-1",
        event_id: str = "ev-1",
        offset: int | None = None,
        at: datetime | None = None,
    ) -> None:
        event = CustomerEvent(
            event_id=event_id, customer_id=customer, type="click", occurred_at=at or utcnow(), source="test"
        )
        await self.handlers.on_events([_record("customer.events", event, offset or next(self.offsets))])

    async def consent(
        self,
        status: str,
        sequence: int,
        customer: str = "c-1",
        purpose: str = EMAIL,
        expires: datetime | None = None,
    ) -> None:
        change = ConsentChanged(
            event_id=f"cc-{customer}-{sequence}",
            customer_id=customer,
            purpose=purpose,
            status=status,  # type: ignore[arg-type]
            previous_status=None,
            reason="user",
            source="test",
            jurisdiction="GDPR",
            policy_version="1",
            recorded_at=utcnow(),
            expires_at=expires,
            sequence=sequence,
        )
        await self.handlers.on_consent_change(_record("consent.changes", change, next(self.offsets)))

    async def admitted(self) -> None:
        """Every admission waiting for the barrier has run (the use case's own background tasks)."""
        await asyncio.gather(*self.membership._releases)

    def announced(self, customer: str = "c-1") -> list[tuple[str, str, str]]:
        return [(m.segment_id, m.action, m.reason) for m in self.publisher.sent if m.customer_id == customer]


def _record(topic: str, message: BaseModel, offset: int) -> ConsumerRecord:
    return ConsumerRecord(
        topic=topic,
        partition=0,
        offset=offset,
        timestamp=int(time.time() * 1000),
        timestamp_type=0,
        key=None,
        value=message.model_dump_json().encode(),
        checksum=None,
        serialized_key_size=0,
        serialized_value_size=0,
        headers=(),
    )


def segmenter(*segments: Segment, barrier: GateBarrier | TimingOutBarrier | None = None) -> Segmenter:
    store, publisher, registry = MemoryCustomerStore(), RecordingPublisher(), SegmentRegistry()
    now = [time.time()]
    for s in segments:
        registry.put(s)

    def required(segment_id: str) -> tuple[str, ...] | None:
        found = registry.get(segment_id)
        return None if found is None else found.required_purposes

    membership = MembershipService(
        store, publisher, required, lambda *_: None, clock=lambda: now[0], barrier=barrier
    )
    expiry, dead = RecordingExpiryQueue(), RecordingProducer()
    handlers = StreamHandlers(store, registry, membership, dead_letters(dead), expiry)
    offsets = iter(range(1, 10_000))
    return Segmenter(store, publisher, registry, membership, handlers, expiry, dead, offsets, now)


async def test_an_event_joins_the_segments_whose_rule_and_consent_hold() -> None:
    s = segmenter(MAIL, OPEN)
    await s.consent("granted", 1)
    await s.event()
    assert sorted(s.announced()) == [("mail", "joined", "rule_matched"), ("open", "joined", "rule_matched")]
    assert (await s.store.read("c-1")).segments == {"mail", "open"}
    assert s.store.members == {"mail": {"c-1"}, "open": {"c-1"}}
    assert s.store.outboxes["c-1"] == []  # published, then cleared
    assert s.store.known == {0: {"c-1"}}  # remembered for the partition's sweeps


async def test_a_consent_grant_joins_whom_the_rule_already_matches() -> None:
    s = segmenter(MAIL, OPEN)
    await s.event()
    assert s.announced() == [("open", "joined", "rule_matched")]
    await s.consent("granted", 1)
    assert s.announced()[1:] == [("mail", "joined", "consent_granted")]
    assert s.expiry.tracked == [(0, "c-1")]  # its next expiry queued after the change


async def test_an_opt_out_evicts_from_every_segment_needing_the_purpose_in_one_publish() -> None:
    s = segmenter(MAIL, NEWS, OFFERS, OPEN)
    await s.consent("granted", 1)
    await s.consent("granted", 2, purpose="personalization")
    await s.event()
    before = len(s.publisher.batches)
    await s.consent("denied", 3)
    evictions = s.publisher.batches[before:]
    assert len(evictions) == 1  # all at once: one acknowledged batch
    assert sorted((m.segment_id, m.action, m.reason) for m in evictions[0]) == [
        ("mail", "left", "consent_withdrawn"),
        ("news", "left", "consent_withdrawn"),
        ("offers", "left", "consent_withdrawn"),
    ]
    assert (await s.store.read("c-1")).segments == {"open"}
    assert s.store.members == {"mail": set(), "news": set(), "offers": set(), "open": {"c-1"}}


async def test_a_stop_while_a_leave_is_acknowledged_clears_it_from_the_outbox() -> None:
    """A worker stopping (its tasks cancelled) while the broker acknowledges a `left` it took
    clears it from the outbox before the cancel goes on: left there, the next owner's reconcile
    sent it again (the scale-out test saw the `left` twice across the second worker's clean stop)."""
    s = segmenter(MAIL)
    await s.consent("granted", 1)
    await s.event()
    slow = SlowAckPublisher()
    s.membership.publisher = slow
    withdrawal = asyncio.create_task(s.consent("denied", 2))
    await slow.sending.wait()
    withdrawal.cancel()  # the supervisor's stop
    await asyncio.sleep(0)
    slow.ack.set()
    with pytest.raises(asyncio.CancelledError):
        await withdrawal
    assert [(m.segment_id, m.action) for m in slow.sent] == [("mail", "left")]
    assert s.store.outboxes["c-1"] == []  # the next owner has nothing to send again


async def test_a_redelivered_event_is_applied_and_announced_once() -> None:
    s = segmenter(OPEN, segment("twice", "event_count >= 2"))
    await s.event(event_id="ev-1", offset=7)
    await s.event(event_id="ev-1", offset=7)  # the same record again (a retry, a rebalance)
    await s.event(event_id="ev-1", offset=8)  # the producer's retry: another offset, same event
    assert (await s.store.read("c-1")).features["events"] == "1"
    assert s.announced() == [("open", "joined", "rule_matched")]  # never "twice"
    await s.event(event_id="ev-2", offset=9)
    assert s.announced()[1:] == [("twice", "joined", "rule_matched")]


async def test_an_invalid_event_is_dead_lettered_and_the_batch_goes_on() -> None:
    s = segmenter(OPEN)
    good = CustomerEvent(event_id="ev-1", customer_id="c-1", type="click", occurred_at=utcnow(), source="t")
    bad = replace(_record("customer.events", good, 1), value=b'{"not": "an event"}')
    await s.handlers.on_events([bad, _record("customer.events", good, 2)])
    assert [topic for topic, _ in s.dead.sent] == ["customer.events.dlq"]
    assert s.announced() == [("open", "joined", "rule_matched")]


async def test_a_consent_snapshot_decides_every_purpose_and_a_tombstone_erases() -> None:
    s = segmenter(MAIL, OFFERS, OPEN)
    await s.event()

    def snapshot(offset: int, **effective: bool) -> ConsumerRecord:
        purposes = {
            p: PurposeState(status="granted", effective=e, recorded_at=utcnow()) for p, e in effective.items()
        }
        state = ConsentStateSnapshot(
            event_id=f"cs-{offset}", customer_id="c-1", purposes=purposes, updated_at=utcnow()
        )
        return _record("consent.state", state, offset)

    await s.handlers.on_consent_state(snapshot(1, marketing_email=True, personalization=True))
    assert sorted(s.announced()[1:]) == [
        ("mail", "joined", "consent_granted"),
        ("offers", "joined", "consent_granted"),
    ]
    # A grant the consent service marks not effective counts as denied (fail closed).
    await s.handlers.on_consent_state(snapshot(2, marketing_email=True, personalization=False))
    assert s.announced()[3:] == [("offers", "left", "consent_withdrawn")]
    tombstone = replace(
        _record("consent.state", PurposeState(status="denied", effective=False), 3), value=None
    )
    await s.handlers.on_consent_state(replace(tombstone, key=b"c-1"))
    assert sorted(s.announced()[4:]) == [("mail", "left", "erased"), ("open", "left", "erased")]
    assert not await s.store.holds("c-1")


async def test_an_eviction_never_waits_for_the_barrier() -> None:
    barrier = GateBarrier()
    s = segmenter(MAIL, barrier=barrier)
    barrier.gate.set()
    await s.consent("granted", 1)
    await s.event()
    await s.admitted()
    assert s.announced() == [("mail", "joined", "rule_matched")]
    barrier.gate.clear()  # the consent follower falls behind
    asked = len(barrier.asked)
    await s.consent("denied", 2)
    assert s.announced()[1:] == [("mail", "left", "consent_withdrawn")]  # while the barrier is closed
    assert len(barrier.asked) == asked  # the leave never asked it


async def test_a_join_is_withheld_until_the_barrier_passes() -> None:
    barrier = GateBarrier()
    s = segmenter(MAIL, OPEN, barrier=barrier)
    await s.consent("granted", 1)
    await s.event()
    assert s.membership._releases  # an admission was started (a join sent at once fails here)...
    await barrier.waiting.wait()  # ...and it waits for the barrier now
    assert s.announced() == [("open", "joined", "rule_matched")]  # needs no consent: at once
    assert barrier.asked == [["c-1"]]
    assert len(s.store.outboxes["c-1"]) == 1  # the join waits in the outbox, committed
    barrier.gate.set()
    await s.admitted()
    assert s.announced()[1:] == [("mail", "joined", "rule_matched")]
    assert s.store.outboxes["c-1"] == []


def _deferred(reason: str) -> float:
    return (
        REGISTRY.get_sample_value("segwarden_segmenter_admissions_deferred_total", {"reason": reason}) or 0.0
    )


def _admissions_waited() -> float:
    return REGISTRY.get_sample_value("segwarden_segmenter_admission_wait_seconds_count") or 0.0


@pytest.mark.parametrize(
    ("error", "reason"), [(BarrierTimeoutError, "timeout"), (ConsentPartitionMovedError, "moved")]
)
async def test_a_join_whose_barrier_timed_out_is_left_to_the_relay(
    error: type[BarrierTimeoutError], reason: str
) -> None:
    """A timed-out barrier (or one whose partition moved away) ends the admission, so the sweep's
    relay can offer the join again; it is counted by reason, and the admission that passes is
    timed. Retried in place, the join kept its place among the waiting, the relay's offer was
    dropped, and a batch with a customer whose partition had moved away never settled (the
    scale-out test: joins of the partitions the first worker kept were never announced)."""
    barrier = TimingOutBarrier(error)
    s = segmenter(MAIL, barrier=barrier)
    deferred, waited = _deferred(reason), _admissions_waited()
    await s.consent("granted", 1)
    await s.event()
    async with asyncio.timeout(5):
        await s.admitted()  # given up, not retried
    assert s.announced() == []
    assert (_deferred(reason), _admissions_waited()) == (deferred + 1, waited)
    barrier.stuck = False
    await s.membership.flush_outbox("c-1")  # the sweep's relay
    await s.admitted()
    assert s.announced() == [("mail", "joined", "rule_matched")]
    assert (_deferred(reason), _admissions_waited()) == (deferred + 1, waited + 1)


async def test_a_join_whose_consent_lapsed_at_the_barrier_is_never_announced() -> None:
    barrier = GateBarrier()
    s = segmenter(MAIL, barrier=barrier)
    await s.consent("granted", 1)
    await s.event()
    await s.consent("denied", 2)  # read while the join waits: it is undone, never announced
    barrier.gate.set()
    await s.admitted()
    assert s.announced() == []
    assert (await s.store.read("c-1")).segments == set()
    assert s.store.members.get("mail", set()) == set()
    assert s.store.outboxes["c-1"] == []


async def test_a_join_whose_grant_expired_while_it_waited_is_withheld_at_the_door() -> None:
    barrier = GateBarrier()
    s = segmenter(MAIL, barrier=barrier)
    expires = datetime.fromtimestamp(s.now[0] + 60, UTC)
    await s.consent("granted", 1, expires=expires)
    await s.event()
    assert (await s.store.read("c-1")).segments == {"mail"}  # committed, waiting to go out
    s.now[0] += 120  # the grant runs out before the barrier passes
    barrier.gate.set()
    await s.admitted()
    assert s.announced() == []  # never published, so its undo is not announced either
    assert (await s.store.read("c-1")).segments == set()
    assert s.store.outboxes["c-1"] == []


async def test_a_batch_of_joins_is_admitted_with_one_store_call_of_each_kind() -> None:
    """However many customers wait: the memory bench's drain (500 new customers a batch, half
    joining a consent-gated segment) waited on one outbox read a customer at the door."""
    barrier = GateBarrier()
    s = segmenter(MAIL, barrier=barrier)
    customers = [f"c-{i}" for i in range(50)]
    for customer in customers:
        await s.consent("granted", 1, customer=customer)
    events = [
        CustomerEvent(event_id=f"ev-{c}", customer_id=c, type="click", occurred_at=utcnow(), source="test")
        for c in customers
    ]
    await s.handlers.on_events([_record("customer.events", e, next(s.offsets)) for e in events])
    await barrier.waiting.wait()
    calls = _count_calls(s.store)
    barrier.gate.set()
    await s.admitted()
    assert barrier.asked == [sorted(customers)]
    assert all(s.announced(c) == [("mail", "joined", "rule_matched")] for c in customers)
    assert calls and max(calls.values()) == 1, calls


def _count_calls(store: MemoryCustomerStore) -> Counter[str]:
    """From now on, how often each of the store's coroutine methods is called."""
    calls: Counter[str] = Counter()

    def counted(name: str, method: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def call(*args: Any, **kwargs: Any) -> Any:
            calls[name] += 1
            return await method(*args, **kwargs)

        return call

    for name in dir(store):
        method = getattr(store, name)
        if not name.startswith("_") and inspect.iscoroutinefunction(method):
            setattr(store, name, counted(name, method))
    return calls


async def test_a_definition_change_re_evaluates_the_owned_customers() -> None:
    s = segmenter(OPEN)
    await s.event()
    reevaluator = SegmentReevaluator()
    reevaluator.sweeper = Sweeper(s.store, s.registry, s.membership, lambda: [0], TEST_PSEUDONYM_KEY)
    definitions = DefinitionService(
        s.registry, MemoryDefinitionStore(), s.publisher, lambda sid, gone: reevaluator.mark([sid], gone)
    )
    stricter = _definition("open", "event_count >= 2", version=2)
    await definitions.save(stricter)
    await definitions.save(_definition("new", "event_count >= 1"))
    assert [(sid, version) for sid, _, version in s.publisher.definitions] == [("open", 2), ("new", 1)]
    assert reevaluator.pending() == 2
    await reevaluator.pass_once()
    assert sorted(s.announced()[1:]) == [
        ("new", "joined", "segment_changed"),
        ("open", "left", "segment_changed"),
    ]
    assert reevaluator.pending() == 0


async def test_a_deleted_segment_is_emptied_and_an_older_definition_ignored() -> None:
    s = segmenter(OPEN)
    await s.event()
    marked: list[tuple[str, bool]] = []
    store = MemoryDefinitionStore()
    definitions = DefinitionService(
        s.registry, store, s.publisher, lambda sid, gone: marked.append((sid, gone))
    )
    await definitions.apply("open", _definition("open", "event_count >= 1", version=2))
    await definitions.apply("open", _definition("open", "event_count >= 5", version=1))
    assert marked == [("open", False)]  # the older definition, replayed from the topic, changed nothing
    assert await definitions.delete("open")
    assert marked[1:] == [("open", True)]
    assert s.registry.get("open") is None
    assert [(r.segment_id, r.version, r.definition) for r in await store.all()] == [("open", 3, None)]
    assert s.publisher.definitions == [("open", None, 3)]
    sweeper = Sweeper(s.store, s.registry, s.membership, lambda: [0], TEST_PSEUDONYM_KEY)
    await sweeper.reevaluate({"open"}, deleted=True)
    assert s.announced()[1:] == [("open", "left", "segment_deleted")]


async def test_the_topic_bringing_back_an_own_write_after_a_newer_one_changes_nothing() -> None:
    """The API applies its writes at once; the definition feed reads them back later, by then
    possibly older than the segment: a deleted segment stays deleted, a re-created one stays."""
    registry, marked = SegmentRegistry(), []
    definitions = DefinitionService(
        registry, MemoryDefinitionStore(), RecordingPublisher(), lambda sid, gone: marked.append((sid, gone))
    )
    first = _definition("open", "event_count >= 1", version=1)
    await definitions.save(first)
    assert await definitions.delete("open")  # version 2
    await definitions.apply("open", first)  # the feed reads the first PUT back
    assert registry.get("open") is None

    again = _definition("open", "event_count >= 3", version=definitions.next_version("open"))
    await definitions.save(again)  # version 3
    await definitions.apply("open", None, 2)  # the feed reads the deletion back
    current = registry.get("open")
    assert current is not None and current.definition == again
    assert marked == [("open", False), ("open", True), ("open", False)]

    await definitions.apply("open", None, 4)  # another worker's later deletion
    assert registry.get("open") is None and definitions.next_version("open") == 5


async def test_a_tombstone_without_its_version_still_deletes() -> None:
    """Tombstones published before the version header existed carry none (version 0)."""
    registry = SegmentRegistry()
    definitions = DefinitionService(registry, MemoryDefinitionStore(), RecordingPublisher(), lambda *_: None)
    await definitions.apply("open", _definition("open", "event_count >= 1", version=3))
    await definitions.apply("open", None)
    assert registry.get("open") is None
    await definitions.apply("open", _definition("open", "event_count >= 1", version=3))
    assert registry.get("open") is None  # deleted at the version it had


async def test_an_erasure_leaves_every_segment_and_refuses_older_input() -> None:
    s = segmenter(MAIL, OPEN)
    await s.consent("granted", 1)
    await s.event()
    change = ConsentChanged(
        event_id="erase",
        customer_id="c-1",
        purpose=EMAIL,
        status="denied",
        previous_status="granted",
        reason="erasure",
        source="test",
        jurisdiction="GDPR",
        policy_version="1",
        recorded_at=datetime.now(UTC),
        sequence=2,
    )
    await s.handlers.on_consent_change(_record("consent.changes", change, next(s.offsets)))
    assert sorted(s.announced()[2:]) == [("mail", "left", "erased"), ("open", "left", "erased")]
    assert not await s.store.holds("c-1")
    assert s.store.known == {0: set()}
    earlier = change.recorded_at - timedelta(minutes=1)
    await s.event(event_id="late", at=earlier)  # queued from before the erasure: refused
    assert not await s.store.holds("c-1")
    assert len(s.announced()) == 4


def _definition(
    segment_id: str, rule: str, version: int = 1, event_id: str | None = None
) -> SegmentDefinition:
    return SegmentDefinition(
        event_id=event_id or f"d-{segment_id}-{version}",
        segment_id=segment_id,
        name=segment_id,
        rule=rule,
        version=version,
        updated_at=utcnow(),
    )
