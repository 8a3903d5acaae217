"""Use cases over the store's ports (`domain/ports.py`): each runs in one transaction that writes
history and outbox together.

Synchronous on purpose (SQLAlchemy sessions); `ConsentService` runs them in a worker thread.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from services.consent.domain.consent import ConsentEntry, CurrentConsent, RecordConsent
from services.consent.domain.policy import ConsentPolicy
from services.consent.domain.ports import ConsentStore, CustomerUnit
from shared import topics
from shared.events import ErasureRequested, new_event_id


def record_consent(
    store: ConsentStore, policy: ConsentPolicy, command: RecordConsent, now: datetime
) -> list[ConsentEntry] | None:
    """Record a choice and queue what it changed; None when its request id was already processed."""
    return record_many(store, policy, [command], now)[0]


def record_many(
    store: ConsentStore, policy: ConsentPolicy, commands: list[RecordConsent], now: datetime
) -> list[list[ConsentEntry] | None]:
    """Record several choices in one transaction, in order; any failure rolls all of them back."""
    for command in commands:
        policy.validate(command, now)
    with store.customers([c.customer_id for c in commands]) as units:
        return [_record(units[c.customer_id], policy, c, now) for c in commands]


def _record(
    unit: CustomerUnit, policy: ConsentPolicy, command: RecordConsent, now: datetime
) -> list[ConsentEntry] | None:
    if command.request_id and not unit.claim_request(command.request_id, now):
        return None
    current = unit.current()
    return _append_and_enqueue(unit, policy, current, policy.decide(command, current, now), now)


def expire_customer(
    store: ConsentStore, policy: ConsentPolicy, customer_id: str, now: datetime
) -> list[ConsentEntry]:
    """Deny (reason expired) every lapsed grant of one customer and queue the changes."""
    with store.customer(customer_id) as unit:
        current = unit.current()
        return _append_and_enqueue(unit, policy, current, policy.expire(customer_id, current, now), now)


def retention_cutoffs(policy: ConsentPolicy, now: datetime) -> dict[str, datetime]:
    """Per purpose, the time before which a superseded history row has outlived its retention."""
    return {p.id: now - timedelta(days=p.retention_days) for p in policy.catalog.purposes}


def retire_history(
    store: ConsentStore, policy: ConsentPolicy, customer_id: str, subject: str, now: datetime
) -> dict[str, int]:
    """Pseudonymize the customer's history rows past their purpose's retention, under their lock."""
    with store.customer(customer_id) as unit:
        return unit.retire(retention_cutoffs(policy, now), subject, now)


def erase_customer(
    store: ConsentStore, policy: ConsentPolicy, customer_id: str, subject: str, now: datetime
) -> tuple[ErasureRequested, list[ConsentEntry]]:
    """Delete the customer's consent details and queue: denials, a state tombstone, the erasure request.

    Pending outbox rows of the customer are deleted with the rest: the tombstone and the denials
    supersede them. The queued rows are deleted (not kept as sent) once the broker has them.
    """
    with store.customer(customer_id) as unit:
        # Numbered like any change: the counter outlives the customer's rows, so a later signup
        # of the same id continues after the erasure's numbers.
        entries = unit.number(policy.erase(customer_id, unit.current(), now))
        # The erasure takes the next number, so consumers order it against every consent change.
        request = ErasureRequested(
            event_id=new_event_id(), customer_id=customer_id, requested_at=now, sequence=unit.next_sequence()
        )
        unit.erase(subject, request.event_id, now)
        for entry in entries:
            unit.enqueue(topics.CONSENT_CHANGES.base, entry.event_id, entry.to_event().to_bytes(), now, True)
        unit.enqueue(topics.CONSENT_STATE.base, new_event_id(), None, now, purge=True)
        unit.enqueue(topics.ERASURE_REQUESTS.base, request.event_id, request.to_bytes(), now, purge=True)
    return request, entries


def snapshot_bytes(store: ConsentStore, policy: ConsentPolicy, customer_id: str, now: datetime) -> bytes:
    """The customer's current consent.state value (for republishing at start)."""
    return policy.snapshot(customer_id, store.current(customer_id), now).to_bytes()


def _append_and_enqueue(
    unit: CustomerUnit,
    policy: ConsentPolicy,
    current: dict[str, CurrentConsent],
    entries: list[ConsentEntry],
    now: datetime,
) -> list[ConsentEntry]:
    """Record the entries with their sequence; returns them numbered."""
    if not entries:
        return []
    entries = unit.number(entries)
    unit.append(entries)
    changed = [entry for entry in entries if entry.publishes]
    for entry in changed:
        unit.enqueue(topics.CONSENT_CHANGES.base, entry.event_id, entry.to_event().to_bytes(), now)
    if changed:
        after = current | {entry.purpose: entry.as_current() for entry in entries}
        snapshot = policy.snapshot(unit.customer_id, after, now)
        unit.enqueue(topics.CONSENT_STATE.base, snapshot.event_id, snapshot.to_bytes(), now)
    return entries
