"""In-memory fakes of the segmenter's ports (services/segmenter/domain/ports.py).

`MemoryCustomerStore` keeps what the Lua scripts of services/segmenter/adapters/lua.py keep, and
decides as they do: an event is applied once per partition offset and event id, consent only
moves to a state that supersedes the held one, a commit is refused when the customer changed
since its snapshot, a join whose consent is not effective at commit does not take effect, and
nothing from before an erasure is applied; a record later than every one applied from its
partition is new even at a lower offset (the topic was created again). It leaves out what the use
cases never see: activity and expiry queues. The Redis store keeps its integration tests
(tests/integration/segmenter/).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import cast

from aiokafka import AIOKafkaProducer

from services.segmenter.domain.consent import ConsentView, PurposeConsent
from services.segmenter.domain.customer import (
    Committed,
    ConsentApplied,
    CustomerSnapshot,
    EventResult,
    EventWrite,
    Pending,
)
from services.segmenter.domain.erasure import ErasureMark
from services.segmenter.domain.membership import MembershipChange, member_flags
from services.segmenter.domain.ports import BarrierTimeoutError
from services.segmenter.domain.segments import StoredDefinition
from shared.deadletter import DeadLetters
from shared.events import MembershipChanged, SegmentDefinition
from tests.support import TEST_PSEUDONYM_KEY

RECENT = 4  # event ids remembered per customer, as lua.RECENT


@dataclass
class Slot:
    """One customer's hash."""

    version: int = 0
    features: dict[str, str] = field(default_factory=dict)
    consent: dict[str, PurposeConsent] = field(default_factory=dict)
    segments: set[str] = field(default_factory=set)
    offsets: dict[int, int] = field(default_factory=dict)  # partition -> highest applied offset
    stamps: dict[int, int] = field(default_factory=dict)  # partition -> latest record timestamp (ms)
    recent: list[str] = field(default_factory=list)  # event ids applied lately, newest first
    unsent: set[str] = field(default_factory=set)  # joins handed over as never published


def _before(mark: ErasureMark | None, at_ms: float, sequence: int | None = None) -> bool:
    """Input from before the customer's erasure (lua.MARKER's `before`)."""
    if mark is None:
        return False
    if sequence is not None and mark.sequence is not None:
        return sequence <= mark.sequence
    return at_ms <= mark.at_ms


def _count(features: dict[str, str], name: str) -> None:
    features[name] = str(int(features.get(name, 0)) + 1)


def _apply_features(features: dict[str, str], w: EventWrite) -> None:
    """The counters APPLY_EVENTS keeps (domain/feature_values.py names the fields)."""
    _count(features, "events")
    _count(features, f"e:{w.type}")
    at = repr(w.occurred_at)
    if "first" not in features or float(features["first"]) > w.occurred_at:
        features["first"] = at
    if "last" not in features or float(features["last"]) < w.occurred_at:
        features["last"] = at
    if w.amount is not None:
        features["spend"] = repr(float(features.get("spend", 0)) + w.amount)
        _count(features, "purchases")
        if "lastp" not in features or float(features["lastp"]) < w.occurred_at:
            features["lastp"] = at
    for attr, value in w.profile.items():
        features[f"p:{attr}"] = json.dumps(value)


class MemoryCustomerStore:
    """The customer store's port (and the sweeps' listing of each partition's customers)."""

    def __init__(self) -> None:
        self.slots: dict[str, Slot] = {}
        self.outboxes: dict[str, list[str]] = {}
        self.marks: dict[str, ErasureMark] = {}
        self.members: dict[str, set[str]] = {}  # segment -> customers, as the member sets say
        self.known: dict[int, set[str]] = {}

    def _slot(self, customer_id: str) -> Slot:
        return self.slots.setdefault(customer_id, Slot())

    def _snapshot(self, customer_id: str) -> CustomerSnapshot:
        slot = self.slots.get(customer_id, Slot())
        return CustomerSnapshot(
            customer_id,
            slot.version,
            dict(slot.features),
            ConsentView(dict(slot.consent)),
            set(slot.segments),
            len(self.outboxes.get(customer_id, [])),
        )

    async def apply_events(
        self, writes: Sequence[EventWrite], known: Iterable[tuple[int, str]]
    ) -> list[EventResult]:
        outcomes: list[tuple[str, bool] | None] = []
        bumped: set[str] = set()
        for w in writes:
            mark = self.marks.get(w.customer_id)
            if _before(mark, w.occurred_at * 1000) or (w.timestamp_ms > 0 and _before(mark, w.timestamp_ms)):
                outcomes.append(None)
                continue
            slot = self._slot(w.customer_id)
            stamp = slot.stamps.get(w.partition)
            recreated = w.timestamp_ms > 0 and stamp is not None and w.timestamp_ms > stamp
            newer = slot.offsets.get(w.partition, -1) < w.offset or recreated
            applied = newer and w.event_id not in slot.recent
            if applied:
                _apply_features(slot.features, w)
                slot.recent = [w.event_id, *slot.recent][:RECENT]
                bumped.add(w.customer_id)
            if newer:
                slot.offsets[w.partition] = w.offset
                if stamp is None or w.timestamp_ms > stamp:
                    slot.stamps[w.partition] = w.timestamp_ms
            outcomes.append((w.customer_id, applied))
        for customer_id in bumped:
            self.slots[customer_id].version += 1
        # Each event gets its customer's state after the whole batch, as the Lua step returns it.
        results: list[EventResult] = [None if o is None else (o[1], self._snapshot(o[0])) for o in outcomes]
        applied_to = {o[0] for o in outcomes if o is not None}
        for partition, customer_id in known:
            if customer_id in applied_to:
                self.known.setdefault(partition, set()).add(customer_id)
        return results

    async def apply_consent(self, customer_id: str, states: dict[str, PurposeConsent]) -> ConsentApplied:
        changed, refused = False, 0
        mark = self.marks.get(customer_id)
        for purpose, state in states.items():
            if _before(mark, state.recorded_at * 1000, state.sequence):
                refused += 1
                continue
            slot = self._slot(customer_id)
            held = slot.consent.get(purpose)
            if held != state and state.supersedes(held):
                slot.consent[purpose] = state
                changed = True
        if changed:
            self.slots[customer_id].version += 1
        return ConsentApplied(changed, refused, self._snapshot(customer_id))

    async def read(self, customer_id: str) -> CustomerSnapshot:
        return self._snapshot(customer_id)

    async def read_many(self, customer_ids: Sequence[str]) -> list[CustomerSnapshot]:
        return [self._snapshot(c) for c in customer_ids]

    async def commit_many(
        self, batch: Sequence[tuple[CustomerSnapshot, Sequence[Pending]]], now: float
    ) -> list[Committed | None]:
        return [self._commit(snapshot, pending, now) for snapshot, pending in batch]

    def _commit(self, snapshot: CustomerSnapshot, pending: Sequence[Pending], now: float) -> Committed | None:
        customer_id = snapshot.customer_id
        held = self.slots.get(customer_id)
        if (held.version if held else 0) != snapshot.version:
            return None
        slot, outbox = held or Slot(), self.outboxes.setdefault(customer_id, [])
        applied: list[MembershipChange] = []
        for change, message in pending:
            if change.action == "joined":
                # Consent checked again in the commit's own step: fail closed, as the Lua does.
                consented = ConsentView(slot.consent).all_effective(change.required_purposes, now)
                done = consented and change.segment_id not in slot.segments
                if done:
                    slot.segments.add(change.segment_id)
                    self.slots.setdefault(customer_id, slot)
            else:
                done = change.segment_id in slot.segments
                slot.segments.discard(change.segment_id)
            if done:
                applied.append(change)
                if message:
                    outbox.append(message)
        return Committed(applied, list(outbox), frozenset(slot.segments))

    async def read_outboxes(self, customer_ids: Sequence[str]) -> list[list[str]]:
        return [list(self.outboxes.get(c, [])) for c in customer_ids]

    async def outbox_lengths(self, customer_ids: Sequence[str]) -> list[int]:
        return [len(self.outboxes.get(c, [])) for c in customer_ids]

    async def clear_outbox(self, sent: Sequence[tuple[str, Sequence[str]]]) -> None:
        for customer_id, messages in sent:
            box = self.outboxes.get(customer_id, [])
            for message in messages:
                if message in box:
                    box.remove(message)  # the oldest copy, as LREM

    async def mark_unsent(self, joins: Sequence[tuple[str, str]]) -> None:
        for customer_id, event_id in joins:
            self._slot(customer_id).unsent.add(event_id)

    async def unsent(self, customer_id: str, event_ids: Sequence[str]) -> set[str]:
        held = self.slots.get(customer_id)
        return set(event_ids) & held.unsent if held else set()

    async def forget_unsent(self, joins: Sequence[tuple[str, str]]) -> None:
        for customer_id, event_id in joins:
            if customer_id in self.slots:
                self.slots[customer_id].unsent.discard(event_id)

    async def set_members_many(self, batch: Sequence[tuple[str, Mapping[str, bool]]]) -> None:
        for customer_id, membership in batch:
            for segment_id, member in membership.items():
                members = self.members.setdefault(segment_id, set())
                if member:
                    members.add(customer_id)
                else:
                    members.discard(customer_id)

    async def sync_members(self, customer_id: str, applied: Sequence[MembershipChange]) -> None:
        await self.set_members_many([(customer_id, member_flags(applied))])

    async def erase(
        self, customer_id: str, left: Sequence[tuple[str, str]], mark: ErasureMark
    ) -> list[str] | None:
        held = self.slots.get(customer_id, Slot()).segments
        if len(left) != len(held) or any(s not in held for s, _ in left):
            return None
        self.slots.pop(customer_id, None)
        old = self.marks.get(customer_id)
        sequences = [s for s in (mark.sequence, old.sequence if old else None) if s is not None]
        at_ms = max(mark.at_ms, old.at_ms if old else 0)
        self.marks[customer_id] = ErasureMark(at_ms, max(sequences) if sequences else None)
        outbox = self.outboxes.setdefault(customer_id, [])
        outbox.extend(message for _, message in left)
        return list(outbox)

    async def holds(self, customer_id: str) -> bool:
        return customer_id in self.slots

    async def remember(self, partition: int, customer_id: str) -> None:
        self.known.setdefault(partition, set()).add(customer_id)

    async def forget(self, partition: int, customer_id: str) -> None:
        self.known.get(partition, set()).discard(customer_id)

    async def known_customers(self, partition: int) -> AsyncIterator[str]:
        for customer_id in sorted(self.known.get(partition, set())):
            yield customer_id

    async def known_count(self, partitions: Sequence[int]) -> int:
        return sum(len(self.known.get(p, set())) for p in partitions)

    async def segment_sizes(self, segment_ids: Sequence[str]) -> list[int]:
        return [len(self.members.get(s, set())) for s in segment_ids]


class RecordingPublisher:
    """Both publishers' ports: what was announced, one list per publish (an acknowledged batch)."""

    def __init__(self) -> None:
        self.batches: list[list[MembershipChanged]] = []
        self.definitions: list[tuple[str, SegmentDefinition | None, int]] = []

    @property
    def sent(self) -> list[MembershipChanged]:
        return [m for batch in self.batches for m in batch]

    async def publish(
        self, changes: Sequence[MembershipChanged], encoded: Sequence[bytes] | None = None
    ) -> list[MembershipChanged]:
        if changes:
            self.batches.append(list(changes))
        return list(changes)

    async def publish_definition(
        self, segment_id: str, definition: SegmentDefinition | None, version: int
    ) -> None:
        self.definitions.append((segment_id, definition, version))


class SlowAckPublisher(RecordingPublisher):
    """A publisher whose broker takes each batch at once (it counts as sent) and acknowledges it
    once `ack` is set; `sending` is set while a batch waits for its acknowledgement."""

    def __init__(self) -> None:
        super().__init__()
        self.ack = asyncio.Event()
        self.sending = asyncio.Event()

    async def publish(
        self, changes: Sequence[MembershipChanged], encoded: Sequence[bytes] | None = None
    ) -> list[MembershipChanged]:
        sent = await super().publish(changes, encoded)
        self.sending.set()
        await self.ack.wait()
        return sent


class MemoryDefinitionStore:
    """The definition store's port: the latest row per segment, a deletion keeping its version."""

    def __init__(self) -> None:
        self.rows: dict[str, StoredDefinition] = {}

    async def all(self) -> list[StoredDefinition]:
        return list(self.rows.values())

    async def upsert(self, definition: SegmentDefinition) -> None:
        self.rows[definition.segment_id] = StoredDefinition(
            definition.segment_id, definition.version, definition
        )

    async def mark_deleted(self, segment_id: str, version: int) -> None:
        self.rows[segment_id] = StoredDefinition(segment_id, version, None)


class GateBarrier:
    """The consent barrier's port: closed until the test opens it; who asked, in order."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.waiting = asyncio.Event()  # set once an admission waits here
        self.asked: list[list[str]] = []

    async def settled(self, customer_ids: Collection[str]) -> None:
        self.asked.append(sorted(customer_ids))
        self.waiting.set()
        await self.gate.wait()


class TimingOutBarrier:
    """The consent barrier's port failing with `error` while `stuck`: a timeout, or a partition
    that moved away (ConsentPartitionMovedError)."""

    def __init__(self, error: type[BarrierTimeoutError] = BarrierTimeoutError) -> None:
        self.stuck = True
        self.error = error

    async def settled(self, customer_ids: Collection[str]) -> None:
        if self.stuck:
            raise self.error("consent partitions not read")


class RecordingExpiryQueue:
    """The expiry queue's port: which customers were queued, per partition."""

    def __init__(self) -> None:
        self.tracked: list[tuple[int, str]] = []

    async def track(self, partition: int, customer_id: str) -> None:
        self.tracked.append((partition, customer_id))


class RecordingProducer:
    """Stands in for the dead letters' producer (shared.deadletter sends with `send_and_wait`)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes]] = []

    async def send_and_wait(self, topic: str, value: bytes, key: bytes | None = None) -> None:
        self.sent.append((topic, value))


def dead_letters(producer: RecordingProducer) -> DeadLetters:
    """DeadLetters names aiokafka's producer; the fake has the one method it calls."""
    return DeadLetters(cast(AIOKafkaProducer, producer), TEST_PSEUDONYM_KEY)


class FakeClock:
    """A monotonic clock that moves only when someone sleeps on it (or a test moves it)."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds
        await asyncio.sleep(0)


class Backlog:
    """The live input's port: input waits until `clock` reaches `clears_at` (None: for ever)."""

    def __init__(self, clock: FakeClock, clears_at: float | None = None) -> None:
        self.clock = clock
        self.clears_at = clears_at

    async def waiting(self) -> bool:
        return self.clears_at is None or self.clock.now < self.clears_at
