"""The ports the use cases in `services/consent/handlers.py` write through; the SQL adapter
(`services/consent/adapters/sql_store.py`) implements them, an in-memory fake
(tests/unit/consent/memory_store.py) stands in for it in the use cases' unit tests. mypy checks
that `SqlConsentStore` conforms where `service.py` hands it to the use cases."""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Protocol

from services.consent.domain.consent import ConsentEntry, CurrentConsent


class CustomerUnit(Protocol):
    """One write transaction holding one customer's lock: read, decide, append, enqueue."""

    @property
    def customer_id(self) -> str: ...

    def current(self) -> dict[str, CurrentConsent]: ...

    def claim_request(self, request_id: str, now: datetime) -> bool:
        """False when this request id was processed before (a redelivery)."""
        ...

    def number(self, entries: list[ConsentEntry]) -> list[ConsentEntry]:
        """The entries with their consent sequence, ascending in list order."""
        ...

    def next_sequence(self) -> int: ...

    def append(self, entries: list[ConsentEntry]) -> None:
        """New history rows, and the current projection moved to them."""
        ...

    def enqueue(
        self, topic: str, event_id: str, payload: bytes | None, now: datetime, purge: bool = False
    ) -> None:
        """An outbox row; `purge` rows are deleted once the broker has them (an erasure's)."""
        ...

    def retire(self, cutoffs: dict[str, datetime], subject: str, now: datetime) -> dict[str, int]:
        """Pseudonymize superseded history rows recorded before their purpose's cutoff; counts by purpose."""
        ...

    def erase(self, subject: str, event_id: str, now: datetime) -> int:
        """Delete every row naming the customer (pending outbox rows too), keep a proof under
        `subject`; rows deleted."""
        ...


class ConsentStore(Protocol):
    """Per-customer write units, each committing on a clean exit and rolling back on an exception."""

    def customer(self, customer_id: str) -> AbstractContextManager[CustomerUnit]: ...

    # A Mapping (not a dict) so that an adapter's own unit type conforms: Mapping is covariant.
    def customers(self, customer_ids: list[str]) -> AbstractContextManager[Mapping[str, CustomerUnit]]:
        """One transaction holding the locks of several customers."""
        ...

    def current(self, customer_id: str) -> dict[str, CurrentConsent]: ...
