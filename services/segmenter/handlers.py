"""The segmenter's use cases, one per input, over the ports of `domain/ports.py`: a batch of
customer events, a consent change (the eviction hot path) or snapshot, an erasure (StreamHandlers:
decode or dead-letter, update the customer store, reconcile membership through
`membership_service.py`), and a definition saved, deleted or read from the topic
(DefinitionService). The consumers that feed them are adapters; the jobs that sweep, expire,
retain and rebuild are modules of their own (docs/architecture.md).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from aiokafka.structs import ConsumerRecord

from services.segmenter.domain.consent import PurposeConsent
from services.segmenter.domain.customer import CustomerSnapshot, EventWrite
from services.segmenter.domain.erasure import ErasureMark
from services.segmenter.domain.membership import EVICTIONS, ON_CONSENT, ON_EVENT
from services.segmenter.domain.ports import CustomerStore, DefinitionPublisher, DefinitionStore, ExpiryQueue
from services.segmenter.domain.segments import (
    Segment,
    SegmentRegistry,
    StoredDefinition,
    features_changed_by,
)
from services.segmenter.membership_service import CUSTOMERS_BETWEEN_YIELDS, Cause, MembershipService, Plan
from services.segmenter.metrics import ERASED_INPUT_REFUSED, EVENTS_PROCESSED, EVICTION_LATENCY
from services.segmenter.rules import RuleError
from shared.deadletter import DeadLetters, decode_or_dead_letter, send_dead_letter
from shared.events import (
    ConsentChanged,
    ConsentStateSnapshot,
    CustomerEvent,
    ErasureRequested,
    MembershipChanged,
    PurposeState,
    SegmentDefinition,
    key_id,
)
from shared.failpoints import failpoint
from shared.metrics import MESSAGES_CONSUMED

log = logging.getLogger(__name__)
DECODES_BETWEEN_YIELDS = 256  # records decoded between two yields (the follower gives way before a batch)
# The source the consent service's expiry job writes on the denials it records.
EXPIRY_SOURCE = "segwarden-expiry"


def type_family(event_type: str) -> str:
    """A bounded metric label: event types are open-ended, their meaning to features is not."""
    return event_type if event_type in ("purchase", "profile_update") else "other"


def purpose_consent(state: PurposeState, fallback_recorded: float) -> PurposeConsent:
    """A snapshot's purpose; one the consent service marks not effective counts as denied (fail
    closed), and as a lapsed denial (`consent_expired`) when its grant ran out or the expiry job
    recorded it."""
    recorded = state.recorded_at.timestamp() if state.recorded_at else fallback_recorded
    expires = state.expires_at.timestamp() if state.expires_at else None
    if state.status == "granted" and state.effective:
        return PurposeConsent("granted", expires, recorded, state.sequence)
    ran_out = state.status == "granted" and expires is not None and expires <= fallback_recorded
    lapsed = ran_out or (state.status == "denied" and state.source == EXPIRY_SOURCE)
    return PurposeConsent("denied", expires, recorded, state.sequence, lapsed)


def erasure_mark(request: ErasureRequested, record: ConsumerRecord) -> ErasureMark:
    """The marker of an erasure request: input dated up to its request or its record is older."""
    at_ms = max(int(request.requested_at.timestamp() * 1000), record.timestamp or 0)
    return ErasureMark(at_ms, request.sequence)


def denial_mark(change: ConsentChanged, record: ConsumerRecord) -> ErasureMark:
    """The marker of an erasure's denial, like its request's: dated by the change or its record.
    No sequence: the erasure's other denials, numbered after this one, are recorded at the same
    instant and so are refused by time (its request, numbered after them all, adds the sequence)."""
    return ErasureMark(max(int(change.recorded_at.timestamp() * 1000), record.timestamp or 0))


def tombstone_mark(record: ConsumerRecord) -> ErasureMark:
    """A consent.state tombstone is written by an erasure only (with its request): its record time."""
    return ErasureMark(max(0, record.timestamp or 0))


def change_consent(change: ConsentChanged) -> PurposeConsent:
    """A consent.changes record as the purpose's state; reason `expired` marks the denial lapsed."""
    expires = change.expires_at.timestamp() if change.expires_at else None
    lapsed = change.status == "denied" and change.reason == "expired"
    return PurposeConsent(change.status, expires, change.recorded_at.timestamp(), change.sequence, lapsed)


@dataclass
class _Latest:
    snapshot: CustomerSnapshot
    event: CustomerEvent
    features: set[str] = field(default_factory=set)
    redelivered: bool = False  # an event of the batch was applied before: a retry or a redelivery


class StreamHandlers:
    def __init__(
        self,
        store: CustomerStore,
        registry: SegmentRegistry,
        membership: MembershipService,
        dead_letters: DeadLetters,
        expiry: ExpiryQueue,
    ) -> None:
        self.store = store
        self.registry = registry
        self.membership = membership
        self.dead_letters = dead_letters
        self.expiry = expiry
        # Awaited at a batch's yield points: returns once the consent changes already fetched are
        # handled (KafkaConsentFollower.give_way). None: the batch only yields to the loop.
        self.give_way: Callable[[], Awaitable[None]] | None = None

    async def on_events(self, records: Sequence[ConsumerRecord]) -> None:
        """A batch: one Lua step per customer for its feature updates (one pipeline for all), then
        one evaluation per customer, and one commit, member-set sync and publish for the batch.

        A redelivered event (a retry after a failure, or after a crash) changes no feature again
        but is still evaluated from the stored state, with the repair of whatever steps after the
        commit may not have run (member sets, the outbox)."""
        for topic, n in Counter(r.topic for r in records).items():
            MESSAGES_CONSUMED.labels(topic).inc(n)
        outcomes: Counter[tuple[str, str]] = Counter()
        decoded: list[tuple[ConsumerRecord, CustomerEvent]] = []
        for i, record in enumerate(records):
            if i and i % DECODES_BETWEEN_YIELDS == 0:
                await self._give_way()  # no lock held yet: consent changes go first
            event = await decode_or_dead_letter(self.dead_letters, record, CustomerEvent)
            if event is None:
                outcomes["invalid", "dead_letter"] += 1
            else:
                decoded.append((record, event))
        if decoded:
            await self._apply(decoded, outcomes)
        for (family, outcome), n in outcomes.items():
            EVENTS_PROCESSED.labels(family, outcome).inc(n)

    async def _apply(
        self, decoded: list[tuple[ConsumerRecord, CustomerEvent]], outcomes: Counter[tuple[str, str]]
    ) -> None:
        writes = [event_write(record, event) for record, event in decoded]
        known = {(record.partition, event.customer_id) for record, event in decoded}
        # No erasure of these customers runs in between.
        async with self.membership.locks.hold_all(c for _, c in known):
            results = await self.store.apply_events(writes, known)
        failpoint("segmenter.events_mid_batch")  # features written, membership not yet reconciled
        latest: dict[str, _Latest] = {}
        erased = 0
        for (_, event), result in zip(decoded, results, strict=True):
            if result is None:
                outcomes[type_family(event.type), "erased"] += 1
                erased += 1
                continue
            applied, snapshot = result
            outcomes[type_family(event.type), "applied" if applied else "duplicate"] += 1
            entry = latest.setdefault(event.customer_id, _Latest(snapshot, event))
            entry.snapshot, entry.event = snapshot, event
            entry.redelivered |= not applied
            entry.features |= features_changed_by(event.type, _profile(event))
        if erased:
            ERASED_INPUT_REFUSED.labels("event").inc(erased)
        plans = []
        for i, entry in enumerate(latest.values()):
            if i % CUSTOMERS_BETWEEN_YIELDS == 0:
                await self._give_way()
            plans.append(self._plan(entry))
        await self._give_way()
        await self.membership.apply_many([p for p in plans if p is not None])

    async def _give_way(self) -> None:
        """A yield point of a batch, where it holds no customer's lock: first the loop runs what is
        ready (the consent follower's fetch among it), then the batch waits until every consent
        change already fetched is handled. Only yielding, an eviction's each await (some ten Redis
        round trips and a produce) came back after another stretch of the batch's evaluation,
        and it waited for the rest of the batch, its commit and publish included (docs/segmenter.md,
        "Why consent changes have their own consumer"). A change of a customer of this batch
        bumps their version, so the batch's commit of their stale snapshot is refused and decided
        again from a fresh read (MembershipService._commit_many)."""
        await asyncio.sleep(0)
        if self.give_way is not None:
            await self.give_way()

    def _plan(self, entry: _Latest) -> Plan | None:
        cause = Cause(entry.event.event_id, entry.event.occurred_at)
        candidates = self.registry.reading(entry.features)
        return self.membership.plan(entry.snapshot, candidates, ON_EVENT, cause, entry.redelivered)

    async def on_consent_change(self, record: ConsumerRecord) -> None:
        """The hot path: record the change, then evict (or admit) at once. A denial of the
        customer's erasure erases them (every segment left as `erased`), before or after its request."""
        MESSAGES_CONSUMED.labels(record.topic).inc()
        change = await decode_or_dead_letter(self.dead_letters, record, ConsentChanged)
        if change is None:
            return
        state = change_consent(change)
        applied = await self.store.apply_consent(change.customer_id, {change.purpose: state})
        if applied.refused:
            ERASED_INPUT_REFUSED.labels("consent").inc(applied.refused)
            return
        snapshot, cause = applied.snapshot, Cause(change.event_id, change.recorded_at)
        if change.reason == "erasure" and applied.changed:
            # Erased and marked at once, not only evicted: the customer's events still queued
            # (dated before the erasure) are then refused, where they would otherwise be applied
            # before the request comes and bring them back into a segment needing no purpose,
            # to be announced `left` a second time.
            mark = denial_mark(change, record)
            published = await self.membership.erase(change.customer_id, record.partition, mark, cause)
            _observe_evictions(published, state.recorded_at)
            return
        candidates = self._candidates(change.purpose, snapshot)
        published = await self.reconcile_consent(record.partition, snapshot, candidates, cause)
        _observe_evictions(published, state.recorded_at)
        await self._track(record.partition, snapshot)

    def _candidates(self, purpose: str, snapshot: CustomerSnapshot) -> list[Segment]:
        """The segments a change of `purpose` can move the customer in or out of. When the purpose
        is not effective now (an opt-out) no join can follow, and it never becomes effective again
        without another change: only the customer's own segments, whatever the catalogue's size.
        With a leftover outbox every one (the repair brings their member sets in line)."""
        if snapshot.outbox or snapshot.consent.effective(purpose, self.membership.clock()):
            return self.registry.requiring([purpose])
        return self.registry.requiring_among([purpose], snapshot.segments)

    async def on_consent_state(self, record: ConsumerRecord) -> None:
        """A compacted snapshot of every purpose; a tombstone means the customer's consent is gone."""
        MESSAGES_CONSUMED.labels(record.topic).inc()
        if record.value is None:
            customer_id = key_id(record.key, "customer")
            if customer_id is None:
                await send_dead_letter(
                    self.dead_letters, record, "key: a tombstone's key is not a customer id"
                )
                return
            await self.erase_customer(record, customer_id, tombstone_mark(record), Cause(None, None))
            return
        snapshot_record = await decode_or_dead_letter(self.dead_letters, record, ConsentStateSnapshot)
        if snapshot_record is None:
            return
        fallback = snapshot_record.updated_at.timestamp()
        states = {p: purpose_consent(s, fallback) for p, s in snapshot_record.purposes.items()}
        if not states:
            return
        applied = await self.store.apply_consent(snapshot_record.customer_id, states)
        if applied.refused:
            ERASED_INPUT_REFUSED.labels("consent").inc(applied.refused)
        snapshot = applied.snapshot
        if applied.refused == len(states):
            return
        cause = Cause(snapshot_record.event_id, snapshot_record.updated_at)
        candidates = self.registry.requiring(states)
        published = await self.reconcile_consent(record.partition, snapshot, candidates, cause)
        _observe_evictions(published, fallback)
        await self._track(record.partition, snapshot)

    async def reconcile_consent(
        self,
        partition: int,
        snapshot: CustomerSnapshot,
        candidates: Sequence[Segment],
        cause: Cause,
        evictions_only: bool = False,
    ) -> list[MembershipChanged]:
        """The membership a consent input decides for the customer (see HeldStreamHandlers)."""
        return await self.membership.reconcile(
            snapshot, candidates, ON_CONSENT, cause, evictions_only=evictions_only
        )

    async def on_erasure(self, record: ConsumerRecord) -> None:
        MESSAGES_CONSUMED.labels(record.topic).inc()
        request = await decode_or_dead_letter(self.dead_letters, record, ErasureRequested)
        if request is None:
            return
        cause = Cause(request.event_id, request.requested_at)
        await self.erase_customer(record, request.customer_id, erasure_mark(request, record), cause)

    async def erase_customer(
        self, record: ConsumerRecord, customer_id: str, mark: ErasureMark, cause: Cause
    ) -> None:
        """An erasure read from `record` (its request, or the consent.state tombstone, whichever
        comes first): every `left` says `erased`, and only the marker stays."""
        await self.membership.erase(customer_id, record.partition, mark, cause)

    async def _track(self, partition: int, snapshot: CustomerSnapshot) -> None:
        """Remember the customer for sweeps, and queue when its next grant expires (a renewal
        moves the due time); not once erased since (checked under the erasure's lock)."""
        customer_id = snapshot.customer_id
        async with self.membership.locks.hold(customer_id):
            if not await self.store.holds(customer_id):
                return
            await self.store.remember(partition, customer_id)
        await self.expiry.track(partition, customer_id)


def _observe_evictions(published: Sequence[MembershipChanged], recorded_at: float) -> None:
    if any(m.action == "left" and m.reason in EVICTIONS for m in published):
        EVICTION_LATENCY.observe(max(0.0, time.time() - recorded_at))


def _profile(event: CustomerEvent) -> dict[str, object]:
    return dict(event.attributes) if event.type == "profile_update" else {}


def event_write(record: ConsumerRecord, event: CustomerEvent) -> EventWrite:
    """The feature update an event makes, with where it was read from (also for the rebuild replay)."""
    amount = event.attributes.get("amount") if event.type == "purchase" else None
    return EventWrite(
        partition=record.partition,
        offset=record.offset,
        event_id=event.event_id,
        customer_id=event.customer_id,
        type=event.type,
        occurred_at=event.occurred_at.timestamp(),
        amount=float(amount) if amount is not None else None,
        profile=_profile(event),
        timestamp_ms=max(0, record.timestamp or 0),
    )


# Marks a segment for re-evaluation (True: deleted, to be emptied); returns at once.
MarkChanged = Callable[[str, bool], None]


class DefinitionService:
    """Segment definitions: saved by the API, spread through `segment.definitions`, applied by each worker."""

    def __init__(
        self,
        registry: SegmentRegistry,
        store: DefinitionStore,
        publisher: DefinitionPublisher,
        on_change: MarkChanged,
    ) -> None:
        self.registry = registry
        self.store = store
        self.publisher = publisher
        # The customers are re-evaluated in the background (reevaluation.py), never in a request.
        self.on_change = on_change
        self.versions: dict[str, int] = {}
        # Per deleted segment, the version of its deletion: a definition up to it is older than
        # the deletion (this worker's own write, read back from the topic after it deleted).
        self.deleted: dict[str, int] = {}
        self.loaded = asyncio.Event()

    async def load_store(self) -> list[StoredDefinition]:
        stored = await self.store.all()
        for row in stored:
            self.versions[row.segment_id] = max(self.versions.get(row.segment_id, 0), row.version)
            if row.definition is None:
                self.deleted[row.segment_id] = max(self.deleted.get(row.segment_id, 0), row.version)
        return stored

    def next_version(self, segment_id: str) -> int:
        return self.versions.get(segment_id, 0) + 1

    async def save(self, definition: SegmentDefinition) -> SegmentDefinition:
        """API write: own store first (it survives the broker), then the topic, then this worker."""
        await self.store.upsert(definition)
        await self.publisher.publish_definition(definition.segment_id, definition, definition.version)
        await self.apply(definition.segment_id, definition)
        return definition

    async def delete(self, segment_id: str) -> bool:
        current = self.registry.get(segment_id)
        if current is None:
            return False
        version = self.next_version(segment_id)
        await self.store.mark_deleted(segment_id, version)
        await self.publisher.publish_definition(segment_id, None, version)
        await self.apply(segment_id, None, version)
        return True

    async def apply(self, segment_id: str, definition: SegmentDefinition | None, version: int = 0) -> None:
        """Install a definition (or a deletion at `version`, 0 when unknown) from the topic or the
        API; repeats are no-ops, and so is anything older than what is installed or deleted. The
        API applies its own write at once, so the topic brings it back later, possibly after a
        newer one: by version, a deleted segment is never brought back by its older definition,
        nor a re-created one deleted by its older tombstone (the suite's stateful API test saw a
        deleted segment answer 200)."""
        current = self.registry.get(segment_id)
        if definition is None:
            if current is not None and version and current.definition.version > version:
                return  # the tombstone of a deletion before the segment was put again
            deleted_at = version or max(
                self.versions.get(segment_id, 0), current.definition.version if current else 0
            )
            self.deleted[segment_id] = max(self.deleted.get(segment_id, 0), deleted_at)
            self.versions[segment_id] = max(self.versions.get(segment_id, 0), deleted_at)
            if current is None:
                return
            self.registry.remove(segment_id)
            self.on_change(segment_id, True)
            return
        if definition.version <= self.deleted.get(segment_id, 0):
            return  # a definition the segment's deletion came after
        if current is not None and current.definition.event_id == definition.event_id:
            return
        if current is not None and current.definition.version > definition.version:
            return  # an older definition replayed from the topic
        try:
            segment = Segment.from_definition(definition)
        except RuleError as exc:
            log.error(
                "ignored a definition whose rule does not compile",
                extra={"segment": segment_id, "error": str(exc)},
            )
            return
        self.registry.put(segment)
        self.versions[segment_id] = max(self.versions.get(segment_id, 0), definition.version)
        self.on_change(segment_id, False)
