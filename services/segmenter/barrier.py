"""ConsentBarrier: what an admission waits on, so no `joined` overtakes an opt-out already written.

A port: the Kafka consent follower implements it (adapters/kafka_consent.py), tests use an
in-memory fake. Evictions never wait on it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Collection


class BarrierTimeoutError(TimeoutError):
    """The consent changes of a customer were not all read in time (a backlog or a rebalance)."""


class ConsentBarrier(ABC):
    @abstractmethod
    async def settled(self, customer_ids: Collection[str]) -> None:
        """Return once every consent change of these customers committed before the call has been
        handled; raise BarrierTimeoutError when that takes too long."""


class NoBarrier(ConsentBarrier):
    """Passes at once: for tests of other things and tools that publish no joins."""

    async def settled(self, customer_ids: Collection[str]) -> None:
        return None
