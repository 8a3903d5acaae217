"""`RedisTrainingSource`: the training set read from the segmenter's own Redis state.

Consent is read first and alone; a customer's features are read only when their purpose is
effective, and that atomic read's own consent is checked again, so a withdrawal that lands
between the two reads still keeps the customer out.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Mapping

from services.segmenter.adapters.redis_store import RedisCustomerStore
from services.segmenter.domain.feature_values import rule_features

# Consent is pre-read for this many customers per Redis round trip.
BATCH = 500
# Atomic feature reads in flight at once (one pooled connection each).
CONCURRENT_READS = 16


class RedisTrainingSource:
    def __init__(
        self, customers: RedisCustomerStore, partitions: int, clock: Callable[[], float] = time.time
    ) -> None:
        self._customers = customers
        self._partitions = partitions
        self._clock = clock
        self.without_consent = 0

    async def population(self) -> int | None:
        return await self._customers.known_count(range(self._partitions))

    async def consented_features(self, purpose: str) -> AsyncIterator[Mapping[str, object]]:
        async for batch in self._batches():
            allowed = [c for c, ok in zip(batch, await self._allowed(batch, purpose), strict=True) if ok]
            self.without_consent += len(batch) - len(allowed)
            for start in range(0, len(allowed), CONCURRENT_READS):
                reads = (self._features(c, purpose) for c in allowed[start : start + CONCURRENT_READS])
                for features in await asyncio.gather(*reads):
                    if features is None:
                        self.without_consent += 1
                    elif features:  # no event yet means no behaviour to learn from: not a training row
                        yield features

    async def _batches(self) -> AsyncIterator[list[str]]:
        seen: set[str] = set()  # a customer is in one partition's set, unless partitions changed
        batch: list[str] = []
        for partition in range(self._partitions):
            async for customer_id in self._customers.known_customers(partition):
                if customer_id not in seen:
                    seen.add(customer_id)
                    batch.append(customer_id)
                if len(batch) >= BATCH:
                    yield batch
                    batch = []
        if batch:
            yield batch

    async def _allowed(self, batch: list[str], purpose: str) -> list[bool]:
        now = self._clock()
        return [consent.effective(purpose, now) for consent in await self._customers.consents(batch)]

    async def _features(self, customer_id: str, purpose: str) -> Mapping[str, object] | None:
        snapshot = await self._customers.read(customer_id)
        now = self._clock()
        if not snapshot.consent.effective(purpose, now):
            return None
        return rule_features(snapshot.features, now)
