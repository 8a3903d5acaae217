"""Synthetic customers written into Redis through the segmenter's own store adapter."""

from __future__ import annotations

import time
import uuid
import zlib
from collections.abc import AsyncIterator, Mapping, Sequence

import pytest
import redis.asyncio as aioredis

from services.segmenter.adapters.redis_keys import KeyLayout
from services.segmenter.adapters.redis_store import RedisCustomerStore
from services.segmenter.domain.consent import PurposeConsent
from services.segmenter.domain.customer import EventWrite
from tests.support import TEST_PSEUDONYM_KEY

DAY = 86400.0
PARTITIONS = 3
SEED_CHUNK = 100  # customers per pipeline: one huge pipeline times out writing to the socket
# (customer id, features, profiling consent: "granted", "denied", "expired" or None, unrecorded)
Person = tuple[str, Mapping[str, float | int], str | None]


@pytest.fixture
async def customers(redis_url: str, topic_prefix: str) -> AsyncIterator[RedisCustomerStore]:
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    yield RedisCustomerStore(client, KeyLayout(f"sw:{topic_prefix}"), TEST_PSEUDONYM_KEY)
    keys = [key async for key in client.scan_iter(f"sw:{topic_prefix}*", count=1000)]
    for start in range(0, len(keys), 1000):
        await client.unlink(*keys[start : start + 1000])
    await client.aclose()  # type: ignore[attr-defined]


def event_plan(features: Mapping[str, float | int], now: float) -> list[tuple[str, float, float | None]]:
    """(type, epoch seconds, amount) of events that give a customer (about) these features."""
    first, last = now - features["first_seen_days"] * DAY, now - features["last_seen_days"] * DAY
    purchases = int(features["purchase_count"])
    times = [first + (last - first) * i / max(purchases, 1) for i in range(purchases)]
    if purchases:
        times[-1] = now - features["last_purchase_days"] * DAY
    amount = features["total_spend"] / purchases if purchases else None
    views = int(features["events.page_view"])
    view_times = [first, last] + [first + (last - first) * i / views for i in range(1, views - 1)]
    return [("purchase", t, amount) for t in times] + [("page_view", t, None) for t in view_times[:views]]


def events_of(customer_id: str, features: Mapping[str, float | int], now: float) -> list[EventWrite]:
    return [
        EventWrite(0, offset, customer_id, uuid.uuid4().hex, kind, at, amount, {"country": "DE"})
        for offset, (kind, at, amount) in enumerate(event_plan(features, now))
    ]


async def seed(store: RedisCustomerStore, people: Sequence[Person]) -> None:
    """Write (customer id, features, profiling) into Redis; profiling is granted, denied, expired
    (a grant whose expiry has passed) or None (no record: the catalog default, denied)."""
    now = time.time()
    for start in range(0, len(people), SEED_CHUNK):
        chunk = people[start : start + SEED_CHUNK]
        writes = [
            write for customer_id, features, _ in chunk for write in events_of(customer_id, features, now)
        ]
        known = [(zlib.crc32(customer_id.encode()) % PARTITIONS, customer_id) for customer_id, _, _ in chunk]
        await store.apply_events(writes, known)
    for customer_id, _, profiling in people:
        if profiling == "expired":
            await store.apply_consent(
                customer_id, {"profiling": PurposeConsent("granted", now - 60, now - DAY)}
            )
        elif profiling is not None:
            await store.apply_consent(customer_id, {"profiling": PurposeConsent(profiling, None, now)})
