"""What the customer store holds and returns: a customer's snapshot, the outcome of a commit, the
feature update an event makes. The store's port (`domain/ports.py`) speaks in these types, so the
use cases and their in-memory fakes share them with the Redis adapter."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from services.segmenter.domain.consent import ConsentView
from services.segmenter.domain.membership import MembershipChange


@dataclass(frozen=True)
class CustomerSnapshot:
    """What one atomic read (or update) of a customer's slot returned."""

    customer_id: str
    version: int
    features: dict[str, str]
    consent: ConsentView
    segments: set[str]
    outbox: int = 0  # messages committed but not yet acknowledged (a leftover: repair before planning)


# Per event: whether it was applied now (False: a duplicate) and the customer's state after it;
# None when it was refused, being from before the customer's erasure.
EventResult = tuple[bool, CustomerSnapshot] | None


@dataclass(frozen=True)
class ConsentApplied:
    changed: bool
    refused: int  # purpose states from before the customer's erasure, not applied
    snapshot: CustomerSnapshot


# A change to commit and the JSON of the MembershipChanged that announces it ("" for none).
Pending = tuple[MembershipChange, str]


@dataclass(frozen=True)
class Committed:
    applied: list[MembershipChange]
    outbox: list[str]
    segments: frozenset[str]  # the customer's segments after the commit


@dataclass(frozen=True)
class EventWrite:
    """The feature update one customer event makes, and where the event was read from: a
    partition's events are applied in offset order, each once."""

    partition: int
    offset: int
    customer_id: str
    event_id: str
    type: str
    occurred_at: float
    amount: float | None
    profile: dict[str, Any]
    # The record's timestamp (ms): tells a topic created again (offsets from 0) from a redelivery.
    timestamp_ms: int = 0
