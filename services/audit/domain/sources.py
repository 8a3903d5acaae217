"""What each source event becomes in the ledger: its kind, pseudonymous subject and payload.

Pure: imports only `shared/` and the audit core. Payloads keep what an auditor needs
(purposes, statuses, reasons, segment ids, timestamps) through the allow-list of
`payloads.py`, and never the raw customer id nor free text that could hold one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from services.audit.domain.ledger import LedgerEntry
from services.audit.domain.payloads import allowed_payload, record_event_id
from shared.events import (
    ConsentChanged,
    DeliveryOutcome,
    DestinationChanged,
    ErasureRequested,
    MembershipChanged,
    Message,
    ModelTrained,
    RetentionRun,
    SegmentDefinition,
)
from shared.pseudonym import pseudonymize


def _payload(kind: str, key: bytes, event: Message, customer_id: str | None = None) -> dict[str, Any]:
    return allowed_payload(kind, key, event.model_dump(mode="json"), customer_id)


CustomerEvent = ConsentChanged | MembershipChanged | ErasureRequested


def _customer_entry(kind: str, key: bytes, event: CustomerEvent) -> LedgerEntry:
    payload = _payload(kind, key, event, event.customer_id)
    event_id = record_event_id(key, event.event_id, event.customer_id)
    return LedgerEntry(kind, pseudonymize(key, event.customer_id), event_id, payload)


def consent_change(key: bytes, event: ConsentChanged) -> LedgerEntry:
    return _customer_entry("consent_change", key, event)


def membership_change(key: bytes, event: MembershipChanged) -> LedgerEntry:
    return _customer_entry("membership_change", key, event)


def erasure_request(key: bytes, event: ErasureRequested) -> LedgerEntry:
    return _customer_entry("erasure_request", key, event)


def model_trained(key: bytes, event: ModelTrained) -> LedgerEntry:
    """A training names no customer, so the record has no subject."""
    event_id = record_event_id(key, event.event_id)
    return LedgerEntry("model_trained", None, event_id, _payload("model_trained", key, event))


def retention_run(key: bytes, event: RetentionRun) -> LedgerEntry:
    """A retention run is counted, never itemized, so the record has no subject either."""
    event_id = record_event_id(key, event.event_id)
    return LedgerEntry("retention_run", None, event_id, _payload("retention_run", key, event))


def delivery_outcome(key: bytes, event: DeliveryOutcome) -> LedgerEntry:
    """The delivery service sends the ledger's own pseudonym as the subject, never the id."""
    event_id = record_event_id(key, event.event_id)
    return LedgerEntry("delivery_outcome", event.subject, event_id, _payload("delivery_outcome", key, event))


def destination_change(key: bytes, event: DestinationChanged) -> LedgerEntry:
    """A change to a destination names no customer, so the record has no subject."""
    event_id = record_event_id(key, event.event_id)
    payload = _payload("destination_change", key, event)
    return LedgerEntry("destination_change", None, event_id, payload)


@dataclass(frozen=True)
class DefinitionChange:
    """A record of `segment.definitions`: a definition's event id and payload, or a tombstone (None)."""

    segment_id: str
    event_id: str | None = None
    payload: dict[str, Any] | None = None


def definition_change(key: bytes, definition: SegmentDefinition) -> DefinitionChange:
    payload = _payload("segment_defined", key, definition)
    return DefinitionChange(definition.segment_id, record_event_id(key, definition.event_id), payload)


@dataclass(frozen=True)
class KnownDefinition:
    """The latest definition of a segment the ledger has recorded."""

    segment_id: str
    event_id: str
    payload: dict[str, Any]
    deleted: bool


# What the ledger is asked to append: a ready entry, or a definition change still to resolve.
SourceItem = LedgerEntry | DefinitionChange


def resolve_definition(
    change: DefinitionChange, known: KnownDefinition | None
) -> tuple[LedgerEntry | None, KnownDefinition | None]:
    """The entry to append (None when already recorded) and the segment's new known state.

    The topic is compacted and republished after restarts, so an unchanged definition
    or a repeated tombstone is a duplicate, not a new fact.
    """
    if change.event_id is None or change.payload is None:
        if known is None or known.deleted:
            return None, known
        # A tombstone has no event id; derive a stable one from what it deletes.
        entry = LedgerEntry(
            "segment_deleted", None, f"{known.event_id}:deleted", {"segment_id": known.segment_id}
        )
        return entry, KnownDefinition(known.segment_id, known.event_id, known.payload, True)
    payload = change.payload
    if known is not None and not known.deleted and known.payload == payload:
        return None, known
    entry = LedgerEntry("segment_defined", None, change.event_id, payload)
    return entry, KnownDefinition(change.segment_id, change.event_id, payload, False)
