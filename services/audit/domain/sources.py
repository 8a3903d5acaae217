"""What each source event becomes in the ledger: its kind, pseudonymous subject and payload.

Pure: imports only `shared/`. Payloads keep what an auditor needs (purposes, statuses,
reasons, segment ids, event ids, timestamps) and never the raw customer id.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from services.audit.domain.ledger import LedgerEntry
from shared.events import (
    ConsentChanged,
    ErasureRequested,
    MembershipChanged,
    Message,
    ModelTrained,
    SegmentDefinition,
)
from shared.pseudonym import pseudonymize

# Fields that identify a person directly; they never enter a payload.
_IDENTIFIERS = {"customer_id", "event_id"}


def _payload(event: Message) -> dict[str, Any]:
    return event.model_dump(mode="json", exclude=_IDENTIFIERS)


def consent_change(key: bytes, event: ConsentChanged) -> LedgerEntry:
    subject = pseudonymize(key, event.customer_id)
    return LedgerEntry("consent_change", subject, event.event_id, _payload(event))


def membership_change(key: bytes, event: MembershipChanged) -> LedgerEntry:
    subject = pseudonymize(key, event.customer_id)
    return LedgerEntry("membership_change", subject, event.event_id, _payload(event))


def erasure_request(key: bytes, event: ErasureRequested) -> LedgerEntry:
    subject = pseudonymize(key, event.customer_id)
    return LedgerEntry("erasure_request", subject, event.event_id, _payload(event))


def model_trained(_key: bytes, event: ModelTrained) -> LedgerEntry:
    """A training names no customer, so the record has no subject (the key is unused)."""
    return LedgerEntry("model_trained", None, event.event_id, _payload(event))


@dataclass(frozen=True)
class DefinitionChange:
    """A record of `segment.definitions`: a definition, or a tombstone (definition None)."""

    segment_id: str
    definition: SegmentDefinition | None


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
    if change.definition is None:
        if known is None or known.deleted:
            return None, known
        # A tombstone has no event id; derive a stable one from what it deletes.
        entry = LedgerEntry(
            "segment_deleted", None, f"{known.event_id}:deleted", {"segment_id": known.segment_id}
        )
        return entry, KnownDefinition(known.segment_id, known.event_id, known.payload, True)
    payload = _payload(change.definition)
    if known is not None and not known.deleted and known.payload == payload:
        return None, known
    entry = LedgerEntry("segment_defined", None, change.definition.event_id, payload)
    return entry, KnownDefinition(change.segment_id, change.definition.event_id, payload, False)
