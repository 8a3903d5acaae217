"""`MemoryConsentStore`: the consent store's ports (services/consent/domain/ports.py) in memory.

A transaction works on a copy of the state and replaces the state with it on a clean exit, so an
exception leaves the store as it was, as the SQL store's rollback does. Sequence numbers are
drawn outside it, like PostgreSQL's `nextval`: a rolled back transaction leaves a gap.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime

from services.consent.domain.consent import ConsentEntry, CurrentConsent, ErasureRecord


@dataclass(frozen=True)
class Row:
    """A history row; a retired one names the customer's pseudonym."""

    entry: ConsentEntry
    retired_at: datetime | None = None


@dataclass(frozen=True)
class Queued:
    """An outbox row."""

    topic: str
    event_id: str
    customer_id: str
    payload: bytes | None
    purge: bool


@dataclass
class State:
    history: list[Row] = field(default_factory=list)
    current: dict[str, dict[str, CurrentConsent]] = field(default_factory=dict)
    outbox: list[Queued] = field(default_factory=list)
    processed: set[str] = field(default_factory=set)
    erasures: dict[str, list[ErasureRecord]] = field(default_factory=dict)


class MemoryCustomerUnit:
    def __init__(self, state: State, customer_id: str, sequences: Iterator[int]) -> None:
        self.state = state
        self.customer_id = customer_id
        self.sequences = sequences

    def current(self) -> dict[str, CurrentConsent]:
        return dict(self.state.current.get(self.customer_id, {}))

    def claim_request(self, request_id: str, now: datetime) -> bool:
        if request_id in self.state.processed:
            return False
        self.state.processed.add(request_id)
        return True

    def number(self, entries: list[ConsentEntry]) -> list[ConsentEntry]:
        return [replace(entry, sequence=self.next_sequence()) for entry in entries]

    def next_sequence(self) -> int:
        return next(self.sequences)

    def append(self, entries: list[ConsentEntry]) -> None:
        current = self.state.current.setdefault(self.customer_id, {})
        for entry in entries:
            self.state.history.append(Row(entry))
            current[entry.purpose] = entry.as_current()

    def enqueue(
        self, topic: str, event_id: str, payload: bytes | None, now: datetime, purge: bool = False
    ) -> None:
        self.state.outbox.append(Queued(topic, event_id, self.customer_id, payload, purge))

    def retire(self, cutoffs: dict[str, datetime], subject: str, now: datetime) -> dict[str, int]:
        latest = {row.entry.purpose: row for row in self.state.history if self._names(row)}
        retired: dict[str, int] = {}
        for i, row in enumerate(self.state.history):
            purpose = row.entry.purpose
            if self._names(row) and purpose in cutoffs and row.entry.recorded_at < cutoffs[purpose]:
                if row is not latest[purpose]:
                    pseudonymous = replace(row.entry, customer_id=subject, user_agent=None, ip_truncated=None)
                    self.state.history[i] = Row(pseudonymous, now)
                    retired[purpose] = retired.get(purpose, 0) + 1
        return retired

    def erase(self, subject: str, event_id: str, now: datetime) -> int:
        state = self.state
        kept = [
            r
            for r in state.history
            if not self._names(r) and not (r.retired_at and r.entry.customer_id == subject)
        ]
        outbox = [q for q in state.outbox if q.customer_id != self.customer_id]
        deleted = len(state.history) - len(kept) + len(state.outbox) - len(outbox)
        deleted += len(state.current.pop(self.customer_id, {}))
        state.history, state.outbox = kept, outbox
        state.erasures.setdefault(subject, []).append(ErasureRecord(event_id, now, deleted))
        return deleted

    def _names(self, row: Row) -> bool:
        return row.retired_at is None and row.entry.customer_id == self.customer_id


class MemoryConsentStore:
    def __init__(self) -> None:
        self.state = State()
        self.sequences = itertools.count(1)

    @contextmanager
    def customer(self, customer_id: str) -> Iterator[MemoryCustomerUnit]:
        with self.customers([customer_id]) as units:
            yield units[customer_id]

    @contextmanager
    def customers(self, customer_ids: list[str]) -> Iterator[dict[str, MemoryCustomerUnit]]:
        working = copy.deepcopy(self.state)
        yield {
            customer_id: MemoryCustomerUnit(working, customer_id, self.sequences)
            for customer_id in customer_ids
        }
        self.state = working  # reached only without an exception: the commit

    def current(self, customer_id: str) -> dict[str, CurrentConsent]:
        return dict(self.state.current.get(customer_id, {}))

    def history(self, customer_id: str) -> list[ConsentEntry]:
        return [row.entry for row in self.state.history if row.entry.customer_id == customer_id]
