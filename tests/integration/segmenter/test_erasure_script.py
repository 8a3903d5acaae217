"""Erasure in Redis: the customer's data goes and their `left` messages are queued in one script; only
a marker named by pseudonym stays, and it refuses every input from before the erasure."""

from __future__ import annotations

import time

from services.segmenter.adapters.redis_keys import SEGMENT
from services.segmenter.adapters.redis_store import RedisCustomerStore
from services.segmenter.domain.consent import PurposeConsent
from services.segmenter.domain.customer import EventWrite
from services.segmenter.domain.erasure import ErasureMark
from tests.integration.segmenter.conftest import naming, outbox_of

CUSTOMER = "c-erasure-7f3a"  # distinctive: a scan for it finds nothing else


async def customer_in(store: RedisCustomerStore, customer: str, *segments: str) -> float:
    """A customer with features, a granted purpose (sequence 5), segments and an outbox leftover;
    returns the time of their input."""
    now = time.time()
    await store.apply_events(
        [EventWrite(0, 1, customer, "e-1", "purchase", now, 20.0, {"country": "DE"}, int(now * 1000))],
        [(0, customer)],
    )
    await store.apply_consent(customer, {"profiling": PurposeConsent("granted", None, now, 5)})
    await store.client.hset(store.keys.state(customer), mapping={SEGMENT + s: "1" for s in segments})
    await store.client.rpush(store.keys.outbox(customer), "older")
    return now


async def test_erasure_deletes_the_data_and_queues_every_left_in_one_step(store: RedisCustomerStore) -> None:
    await customer_in(store, "c-1", "a", "b")
    outbox = await store.erase(
        "c-1", [("a", "left-a"), ("b", "left-b")], ErasureMark(int(time.time() * 1000))
    )
    assert outbox == ["older", "left-a", "left-b"]
    assert await outbox_of(store, "c-1") == outbox
    snapshot = await store.read("c-1")
    assert (snapshot.features, snapshot.consent.purposes, snapshot.segments) == ({}, {}, set())


async def test_erasure_refuses_messages_that_miss_a_segment_and_keeps_the_data(
    store: RedisCustomerStore,
) -> None:
    await customer_in(store, "c-2", "a", "b")
    mark = ErasureMark(int(time.time() * 1000))
    for stale in ([("a", "left-a")], [("a", "left-a"), ("c", "left-c")], []):
        assert await store.erase("c-2", stale, mark) is None
    snapshot = await store.read("c-2")
    assert snapshot.segments == {"a", "b"} and snapshot.features and "profiling" in snapshot.consent.purposes
    assert await outbox_of(store, "c-2") == ["older"]
    assert not await store.client.exists(store.marker("c-2"))


async def test_after_an_erasure_only_a_pseudonymous_marker_stays_and_older_input_is_refused(
    store: RedisCustomerStore,
) -> None:
    at = await customer_in(store, CUSTOMER, "a")
    erased_ms = int(at * 1000) + 1
    outbox = await store.erase(CUSTOMER, [("a", "left-a")], ErasureMark(erased_ms, 7))
    assert outbox is not None
    await store.clear_outbox([(CUSTOMER, outbox)])  # the leaves published
    await store.forget(0, CUSTOMER)
    namespace = store.keys.namespace
    assert await naming(store.client, namespace, CUSTOMER) == []  # no key, field or member names them
    assert await store.client.hgetall(store.marker(CUSTOMER)) == {"at": str(erased_ms), "seq": "7"}
    # Expires at the erasure time plus the marker's ttl: the clock read before PTTL bounds it.
    before_ms = int(time.time() * 1000)
    ttl_ms = await store.client.pttl(store.marker(CUSTOMER))
    assert 0 < ttl_ms <= erased_ms + store.marker_ttl_ms - before_ms

    # A redelivered event (same offset and record time), one from another partition written later
    # but dated before the erasure, a consent change numbered before it, a replayed snapshot
    # without sequence: all refused, and none of them writes a key or remembers the customer.
    redelivered = EventWrite(0, 1, CUSTOMER, "e-1", "purchase", at, 20.0, {}, int(at * 1000))
    late = EventWrite(1, 9, CUSTOMER, "e-9", "click", at, None, {}, int(time.time() * 1000) + 5)
    assert await store.apply_events([redelivered, late], [(0, CUSTOMER), (1, CUSTOMER)]) == [None, None]
    granted = await store.apply_consent(CUSTOMER, {"profiling": PurposeConsent("granted", None, at, 6)})
    assert (granted.changed, granted.refused) == (False, 1)
    snapshot = await store.apply_consent(CUSTOMER, {"profiling": PurposeConsent("granted", None, at)})
    assert snapshot.refused == 1
    assert await store.mark_erased(CUSTOMER, ErasureMark(erased_ms - 10)) == 0  # a rebuild's re-mark
    assert await store.client.hgetall(store.marker(CUSTOMER)) == {"at": str(erased_ms), "seq": "7"}
    assert await naming(store.client, namespace, CUSTOMER) == []

    # A new signup after the erasure is a new customer: consent numbered after it, a later event.
    fresh = await store.apply_consent(CUSTOMER, {"profiling": PurposeConsent("granted", None, at, 8)})
    assert fresh.changed and fresh.snapshot.consent.purposes["profiling"].sequence == 8
    later = time.time() + 1
    [result] = await store.apply_events(
        [EventWrite(0, 2, CUSTOMER, "e-2", "click", later, None, {}, int(later * 1000))], [(0, CUSTOMER)]
    )
    assert result is not None and result[0] is True
    assert (await store.known_scores(0, [CUSTOMER]))[0] is not None


async def test_marking_an_erasure_unannounced_drops_only_the_consent_from_before_it(
    store: RedisCustomerStore,
) -> None:
    at = time.time()
    await store.apply_consent(
        CUSTOMER,
        {
            "profiling": PurposeConsent("granted", None, at, 3),
            "marketing_email": PurposeConsent("granted", None, at, 9),
        },
    )
    assert await store.mark_erased(CUSTOMER, ErasureMark(int(at * 1000), 5)) == 1
    assert set((await store.read(CUSTOMER)).consent.purposes) == {"marketing_email"}
