"""What each destination should hold of a customer, and the webhooks that bring it there."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import date

from services.delivery.domain.destinations import Destination, active

Holding = tuple[str, str]  # (destination_id, segment_id): the destination was told "joined"
# purpose -> (effective, the consent sequence that set it; None on records from before sequences)
Consent = dict[str, tuple[bool, int | None]]


@dataclass(frozen=True)
class Cause:
    """The input that made the change: a membership change (with its reason) or a consent change."""

    event_id: str
    kind: str  # "membership", "consent" or "erasure"
    reason: str
    at: float | None = None  # when the change happened (unix time): latency is measured from it
    # A membership change's own cause (the segmenter's `cause_event_id`): the webhooks of a
    # withdrawal's eviction belong to that withdrawal.
    origin: str | None = None
    # The consent changes this input carries, (purpose, sequence): what it tells delivery of.
    consent_changes: tuple[tuple[str, int], ...] = ()

    @property
    def webhook_cause(self) -> str:
        """What each webhook that follows records as its cause."""
        return self.origin or self.event_id


@dataclass(frozen=True)
class Intent:
    """One webhook to enqueue: tell `destination_id` the customer `action` `segment_id`."""

    destination_id: str
    segment_id: str
    action: str
    reason: str
    idempotency_key: str


def merge_consent(current: Consent, incoming: Consent) -> Consent:
    """Each purpose takes the incoming state unless the one held was set by a later change."""
    merged = dict(current)
    for purpose, (effective, sequence) in incoming.items():
        held = merged.get(purpose)
        if held is None or held[1] is None or sequence is None or sequence >= held[1]:
            merged[purpose] = (effective, sequence)
    return merged


def newest_changes(consent: Consent) -> tuple[tuple[str, int], ...]:
    """The change a `consent.state` snapshot was published for: its purpose at its highest
    sequence (consent publishes a snapshot after each change; older purposes ride along)."""
    sequences = [sequence for _, sequence in consent.values() if sequence is not None]
    if not sequences:
        return ()
    top = max(sequences)
    return tuple((purpose, top) for purpose, (_, sequence) in sorted(consent.items()) if sequence == top)


def effective_purposes(consent: Consent) -> frozenset[str]:
    return frozenset(purpose for purpose, (effective, _) in consent.items() if effective)


def wanted(destinations: list[Destination], members: set[str], purposes: frozenset[str]) -> set[Holding]:
    """Linked segments the customer is in, at destinations whose purposes the consent covers."""
    return {
        (d.destination_id, segment)
        for d in destinations
        if d.purposes <= purposes
        for segment in d.segments & members
    }


def plan(
    destinations: list[Destination],
    today: date,
    members: set[str],
    consent: Consent,
    held: set[Holding],
    cause: Cause,
) -> list[Intent]:
    """The joins and leaves that bring every active destination to what it should hold.

    A destination without a valid agreement is left out entirely: it gets neither joins nor
    leaves, and what it holds is not touched until its agreement is valid again."""
    open_ = active(destinations, today)
    ids = {d.destination_id for d in open_}
    want = wanted(open_, members, effective_purposes(consent))
    holds = {h for h in held if h[0] in ids}
    intents = [_intent(h, "joined", _join_reason(cause), cause) for h in sorted(want - holds)]
    for holding in sorted(holds - want):
        reason = "consent_withdrawn" if holding[1] in members else _leave_reason(cause)
        intents.append(_intent(holding, "left", reason, cause))
    return intents


def _join_reason(cause: Cause) -> str:
    return cause.reason if cause.kind == "membership" else "consent_granted"


def _leave_reason(cause: Cause) -> str:
    return "consent_withdrawn" if cause.kind == "consent" else cause.reason


def _intent(holding: Holding, action: str, reason: str, cause: Cause) -> Intent:
    destination_id, segment_id = holding
    return Intent(
        destination_id, segment_id, action, reason, idempotency_key(cause.event_id, holding, action)
    )


def idempotency_key(cause_event_id: str, holding: Holding, action: str) -> str:
    """Stable per input, destination, segment and action: a replayed input makes the same key."""
    raw = "\n".join((cause_event_id, *holding, action)).encode()
    return hashlib.sha256(raw).hexdigest()[:32]
