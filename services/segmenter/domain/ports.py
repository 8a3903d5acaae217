"""The ports the segmenter's use cases (`handlers.py`, `membership_service.py`) work through.

The adapters implement them: `RedisCustomerStore` the customer store (and the swept one that the
jobs of `sweeps.py` read), `KafkaMembershipPublisher` both publishers, `SqliteDefinitionStore`
the definition store, `KafkaConsentFollower` the consent barrier, `ExpiryScheduler` the expiry
queue, both followers (`KafkaConsentFollower`, `KafkaEventFollower`) the live input that the
passes over every customer give way to (`pacing.py`). mypy checks each where `bootstrap.py`
hands it to a use case, and tests/unit/segmenter/test_ports.py names every pair; in-memory fakes
(tests/unit/segmenter/memory_store.py) stand in for them in the use cases' unit tests.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection, Iterable, Mapping, Sequence
from typing import Protocol

from services.segmenter.domain.consent import PurposeConsent
from services.segmenter.domain.customer import (
    Committed,
    ConsentApplied,
    CustomerSnapshot,
    EventResult,
    EventWrite,
    Pending,
)
from services.segmenter.domain.erasure import ErasureMark
from services.segmenter.domain.membership import MembershipChange
from services.segmenter.domain.segments import StoredDefinition
from shared.events import MembershipChanged, SegmentDefinition


class CustomerStore(Protocol):
    """Each customer's features, consent, segments and outbox (one atomic slot each), the
    segments' member sets, and the partitions' known customers."""

    async def apply_events(
        self, writes: Sequence[EventWrite], known: Iterable[tuple[int, str]]
    ) -> list[EventResult]:
        """Each event applied once (a redelivery is a duplicate), none from before an erasure;
        the customers of `known` (partition, customer) remembered unless all theirs were refused."""
        ...

    async def apply_consent(self, customer_id: str, states: dict[str, PurposeConsent]) -> ConsentApplied:
        """Each purpose's state recorded when it supersedes the held one and is not from before
        the customer's erasure."""
        ...

    async def read(self, customer_id: str) -> CustomerSnapshot: ...

    async def read_many(self, customer_ids: Sequence[str]) -> list[CustomerSnapshot]: ...

    async def commit_many(
        self, batch: Sequence[tuple[CustomerSnapshot, Sequence[Pending]]], now: float
    ) -> list[Committed | None]:
        """Each customer's changes, if unchanged since its snapshot (else None); a join whose
        consent is not effective at `now` does not take effect; an applied change's message joins
        the outbox in the same step."""
        ...

    async def read_outboxes(self, customer_ids: Sequence[str]) -> list[list[str]]:
        """Each customer's outbox (its messages in order), in one round trip for all."""
        ...

    async def outbox_lengths(self, customer_ids: Sequence[str]) -> list[int]: ...

    async def clear_outbox(self, sent: Sequence[tuple[str, Sequence[str]]]) -> None:
        """Drop published (or withheld) messages from their customers' outboxes."""
        ...

    async def mark_unsent(self, joins: Sequence[tuple[str, str]]) -> None:
        """Record (customer, event id) joins as never published, for whoever owns them next."""
        ...

    async def unsent(self, customer_id: str, event_ids: Sequence[str]) -> set[str]: ...

    async def forget_unsent(self, joins: Sequence[tuple[str, str]]) -> None: ...

    async def set_members_many(self, batch: Sequence[tuple[str, Mapping[str, bool]]]) -> None:
        """The segments' member sets follow the customers' own (segment -> member)."""
        ...

    async def sync_members(self, customer_id: str, applied: Sequence[MembershipChange]) -> None: ...

    async def erase(
        self, customer_id: str, left: Sequence[tuple[str, str]], mark: ErasureMark
    ) -> list[str] | None:
        """Forget the customer, mark the erasure and queue `left` (segment, message) at once; the
        outbox, or None unless `left` names exactly the customer's segments."""
        ...

    async def holds(self, customer_id: str) -> bool: ...

    async def remember(self, partition: int, customer_id: str) -> None:
        """Remember the customer for the partition's sweeps."""
        ...

    async def forget(self, partition: int, customer_id: str) -> None:
        """Out of the partition's sweep, expiry and activity queues."""
        ...


class SweptCustomerStore(CustomerStore, Protocol):
    """The customer store with the customers of each partition listed: what the jobs that visit
    every owned customer (the sweep, the re-evaluation of a changed segment) read."""

    def known_customers(self, partition: int) -> AsyncIterator[str]: ...

    async def known_count(self, partitions: Sequence[int]) -> int: ...

    async def segment_sizes(self, segment_ids: Sequence[str]) -> list[int]:
        """Live members of each segment."""
        ...


class MembershipPublisher(Protocol):
    """Where membership changes are announced (segment.membership), acknowledged before return."""

    async def publish(
        self, changes: Sequence[MembershipChanged], encoded: Sequence[bytes] | None = None
    ) -> object: ...


class DefinitionPublisher(Protocol):
    """Where segment definitions are spread to every worker (segment.definitions); None deletes."""

    async def publish_definition(
        self, segment_id: str, definition: SegmentDefinition | None, version: int
    ) -> None:
        """The definition, or (None) a tombstone carrying the deletion's `version`."""


class DefinitionStore(Protocol):
    """The segmenter's own copy of the definitions, which survives the broker."""

    async def all(self) -> list[StoredDefinition]: ...

    async def upsert(self, definition: SegmentDefinition) -> None: ...

    async def mark_deleted(self, segment_id: str, version: int) -> None: ...


class ExpiryQueue(Protocol):
    """When each customer's next grant expires, so their evictions come on time."""

    async def track(self, partition: int, customer_id: str) -> None: ...


class BarrierTimeoutError(TimeoutError):
    """The consent changes of a customer were not all read in time (a backlog or a rebalance)."""


class ConsentPartitionMovedError(BarrierTimeoutError):
    """A customer's consent partition is not followed by this worker (it moved away in a
    rebalance): it never settles here, so there is nothing to wait for."""


class ConsentBarrier(Protocol):
    """What an admission waits on, so no `joined` overtakes an opt-out already written. Evictions
    never wait on it."""

    async def settled(self, customer_ids: Collection[str]) -> None:
        """Return once every consent change of these customers committed before the call has been
        handled; raise BarrierTimeoutError when that takes too long."""
        ...


class LiveInput(Protocol):
    """Input the passes over every owned customer give way to (services/segmenter/pacing.py)."""

    async def waiting(self) -> bool:
        """Whether input is waiting to be handled now."""
        ...
