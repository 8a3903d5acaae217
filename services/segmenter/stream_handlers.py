"""Handlers of the segmenter's input streams: decode (or dead-letter), update Redis, reconcile membership."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from aiokafka.structs import ConsumerRecord

from services.segmenter.adapters.redis_store import CustomerSnapshot, EventWrite, RedisCustomerStore
from services.segmenter.domain.consent import PurposeConsent
from services.segmenter.domain.membership import ON_CONSENT, ON_EVENT
from services.segmenter.domain.segments import SegmentRegistry, features_changed_by
from services.segmenter.expiry import ExpiryScheduler
from services.segmenter.membership_service import Cause, MembershipService, Plan
from services.segmenter.metrics import EVENTS_PROCESSED, EVICTION_LATENCY
from shared.deadletter import DeadLetters, decode_or_dead_letter
from shared.events import (
    ConsentChanged,
    ConsentStateSnapshot,
    CustomerEvent,
    ErasureRequested,
    MembershipChanged,
    PurposeState,
)
from shared.failpoints import failpoint
from shared.metrics import MESSAGES_CONSUMED

log = logging.getLogger(__name__)
EVICTIONS = ("consent_withdrawn", "consent_expired")
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
        store: RedisCustomerStore,
        registry: SegmentRegistry,
        membership: MembershipService,
        dead_letters: DeadLetters,
        expiry: ExpiryScheduler,
    ) -> None:
        self.store = store
        self.registry = registry
        self.membership = membership
        self.dead_letters = dead_letters
        self.expiry = expiry

    async def on_events(self, records: Sequence[ConsumerRecord]) -> None:
        """A batch: one Redis pipeline for every feature update, then one evaluation per customer.

        A redelivered event (a retry after a failure, or after a crash) changes no feature again
        but is still evaluated from the stored state, with the repair of whatever steps after the
        commit may not have run (member sets, the outbox)."""
        decoded: list[tuple[ConsumerRecord, CustomerEvent]] = []
        for record in records:
            MESSAGES_CONSUMED.labels(record.topic).inc()
            event = await decode_or_dead_letter(self.dead_letters, record, CustomerEvent)
            if event is None:
                EVENTS_PROCESSED.labels("invalid", "dead_letter").inc()
            else:
                decoded.append((record, event))
        if not decoded:
            return
        writes = [event_write(record, event) for record, event in decoded]
        known = {(record.partition, event.customer_id) for record, event in decoded}
        results = await self.store.apply_events(writes, known)
        failpoint("segmenter.events_mid_batch")  # features written, membership not yet reconciled
        latest: dict[str, _Latest] = {}
        for (_, event), (applied, snapshot) in zip(decoded, results, strict=True):
            EVENTS_PROCESSED.labels(type_family(event.type), "applied" if applied else "duplicate").inc()
            entry = latest.setdefault(event.customer_id, _Latest(snapshot, event))
            entry.snapshot, entry.event = snapshot, event
            entry.redelivered |= not applied
            entry.features |= features_changed_by(event.type, _profile(event))
        plans = [self._plan(entry) for entry in latest.values()]
        await self.membership.apply_many([p for p in plans if p is not None])

    def _plan(self, entry: _Latest) -> Plan | None:
        cause = Cause(entry.event.event_id, entry.event.occurred_at)
        candidates = self.registry.reading(entry.features)
        return self.membership.plan(entry.snapshot, candidates, ON_EVENT, cause, entry.redelivered)

    async def on_consent_change(self, record: ConsumerRecord) -> None:
        """The hot path: record the change, then evict (or admit) at once."""
        MESSAGES_CONSUMED.labels(record.topic).inc()
        change = await decode_or_dead_letter(self.dead_letters, record, ConsentChanged)
        if change is None:
            return
        state = change_consent(change)
        _, snapshot = await self.store.apply_consent(change.customer_id, {change.purpose: state})
        candidates = self.registry.requiring([change.purpose])
        published = await self.membership.reconcile(
            snapshot, candidates, ON_CONSENT, Cause(change.event_id, change.recorded_at)
        )
        _observe_evictions(published, state.recorded_at)
        await self._track(record.partition, snapshot)

    async def on_consent_state(self, record: ConsumerRecord) -> None:
        """A compacted snapshot of every purpose; a tombstone means the customer's consent is gone."""
        MESSAGES_CONSUMED.labels(record.topic).inc()
        if record.value is None:
            if record.key:
                await self._consent_gone(record.key.decode(), record.partition)
            return
        snapshot_record = await decode_or_dead_letter(self.dead_letters, record, ConsentStateSnapshot)
        if snapshot_record is None:
            return
        fallback = snapshot_record.updated_at.timestamp()
        states = {p: purpose_consent(s, fallback) for p, s in snapshot_record.purposes.items()}
        if not states:
            return
        _, snapshot = await self.store.apply_consent(snapshot_record.customer_id, states)
        cause = Cause(snapshot_record.event_id, snapshot_record.updated_at)
        published = await self.membership.reconcile(
            snapshot, self.registry.requiring(states), ON_CONSENT, cause
        )
        _observe_evictions(published, fallback)
        await self._track(record.partition, snapshot)

    async def on_erasure(self, record: ConsumerRecord) -> None:
        MESSAGES_CONSUMED.labels(record.topic).inc()
        request = await decode_or_dead_letter(self.dead_letters, record, ErasureRequested)
        if request is None:
            return
        await self.membership.erase(request.customer_id, Cause(request.event_id, request.requested_at))
        await self.store.forget(record.partition, request.customer_id)

    async def _consent_gone(self, customer_id: str, partition: int) -> None:
        snapshot = await self.store.clear_consent(customer_id)
        candidates = [s for s in self.registry.all() if s.id in snapshot.segments]
        await self.membership.reconcile(snapshot, candidates, ON_CONSENT, Cause(None, None))
        await self.expiry.track(partition, customer_id)

    async def _track(self, partition: int, snapshot: CustomerSnapshot) -> None:
        """Remember the customer for sweeps, and queue when its next grant expires (a renewal
        moves the due time)."""
        await self.store.remember(partition, snapshot.customer_id)
        await self.expiry.track(partition, snapshot.customer_id)


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
