"""Erasure in Redis: the customer's data goes and their `left` messages are queued in one script."""

from __future__ import annotations

import time

from services.segmenter.adapters.redis_store import EventWrite, RedisCustomerStore
from services.segmenter.domain.consent import PurposeConsent


async def customer_in(store: RedisCustomerStore, customer: str, *segments: str) -> None:
    now = time.time()
    await store.apply_events(
        [EventWrite(0, 1, customer, "e-1", "purchase", now, 20.0, {"country": "DE"})], []
    )
    await store.apply_consent(customer, {"profiling": PurposeConsent("granted", None, now)})
    await store.client.sadd(store.keys.segments(customer), *segments)
    await store.client.rpush(store.keys.outbox(customer), "older")


async def test_erasure_deletes_the_data_and_queues_every_left_in_one_step(store: RedisCustomerStore) -> None:
    await customer_in(store, "c-1", "a", "b")
    outbox = await store.erase("c-1", [("a", "left-a"), ("b", "left-b")])
    assert outbox == ["older", "left-a", "left-b"]
    assert await store.outbox("c-1") == outbox
    snapshot = await store.read("c-1")
    assert (snapshot.features, snapshot.consent.purposes, snapshot.segments) == ({}, {}, set())


async def test_erasure_refuses_messages_that_miss_a_segment_and_keeps_the_data(
    store: RedisCustomerStore,
) -> None:
    await customer_in(store, "c-2", "a", "b")
    for stale in ([("a", "left-a")], [("a", "left-a"), ("c", "left-c")], []):
        assert await store.erase("c-2", stale) is None
    snapshot = await store.read("c-2")
    assert snapshot.segments == {"a", "b"} and snapshot.features and "profiling" in snapshot.consent.purposes
    assert await store.outbox("c-2") == ["older"]
