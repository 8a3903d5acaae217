"""APPLY_EVENTS and COMMIT over many customers in one Lua call, against the real Redis: whatever
the batches (redeliveries, repeated event ids, erased customers, stale snapshots, joins without
consent), one call for all customers, or calls of one hash slot's customers, return and store
exactly what one call per customer does."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import replace
from typing import Any

import redis.asyncio as aioredis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.crc import key_slot

from services.segmenter.adapters.redis_keys import KeyLayout, calls_by_slot
from services.segmenter.adapters.redis_store import RedisCustomerStore
from services.segmenter.domain.consent import PurposeConsent
from services.segmenter.domain.erasure import ErasureMark
from services.segmenter.domain.membership import MembershipChange
from tests.integration.segmenter.conftest import outbox_of
from tests.integration.segmenter.test_events_script import T, event_lists, write
from tests.support import TEST_PSEUDONYM_KEY, forget_redis_keys

CUSTOMERS = [f"c-{i}" for i in range(6)]
events = event_lists(CUSTOMERS)
ops = st.lists(
    st.tuples(st.sampled_from(["a", "b", "c"]), st.sampled_from(["joined", "left"]), st.booleans()),
    max_size=3,
)
commits = st.dictionaries(st.sampled_from(CUSTOMERS), st.tuples(ops, st.booleans()), min_size=1)
steps = st.lists(
    st.one_of(
        st.tuples(st.just("events"), events),
        st.tuples(st.just("commit"), commits),
        st.tuples(st.just("grant"), st.sampled_from(CUSTOMERS)),
        st.tuples(st.just("erase"), st.sampled_from(CUSTOMERS), st.integers(0, 20)),
    ),
    min_size=1,
    max_size=8,
)


async def run_steps(store: RedisCustomerStore, todo: list[Any]) -> list[Any]:
    """Every step's result, and at the end each customer's hash and outbox."""
    out: list[Any] = []
    for step in todo:
        if step[0] == "events":
            writes = [write(*e) for e in step[1]]
            out.append(await store.apply_events(writes, [(w.partition, w.customer_id) for w in writes]))
        elif step[0] == "commit":
            batch = []
            for customer, (changes, stale) in step[1].items():
                snapshot = await store.read(customer)
                if stale:
                    snapshot = replace(snapshot, version=snapshot.version + 1)
                pending = [
                    (MembershipChange(s, action, "rule", ("m",) if gated else ()), f"{customer}:{s}:{action}")
                    for s, action, gated in changes
                ]
                batch.append((snapshot, pending))
            out.append(await store.commit_many(batch, T + 10))
        elif step[0] == "grant":
            out.append(await store.apply_consent(step[1], {"m": PurposeConsent("granted", None, T, 1)}))
        else:
            out.append(await store.mark_erased(step[1], ErasureMark(int((T + step[2]) * 1000))))
    for customer in CUSTOMERS:
        out.append(await store.client.hgetall(store.keys.state(customer)))
        out.append(await outbox_of(store, customer))
    return out


async def compare(url: str, todo: list[Any]) -> list[list[Any]]:
    client = aioredis.Redis.from_url(url, decode_responses=True)
    prefixes = [f"t{uuid.uuid4().hex[:10]}." for _ in range(3)]
    namespaces = [f"sw:{prefix}" for prefix in prefixes]
    try:
        one_each = RedisCustomerStore(
            client, KeyLayout(namespaces[0]), TEST_PSEUDONYM_KEY, customers_per_call=1
        )
        all_in_one = RedisCustomerStore(client, KeyLayout(namespaces[1]), TEST_PSEUDONYM_KEY)
        by_slot = RedisCustomerStore(
            client, KeyLayout(namespaces[2]), TEST_PSEUDONYM_KEY, customers_per_call=2
        )
        by_slot.by_slot = True  # as on a cluster: calls of one slot's customers, two at most
        return [await run_steps(store, todo) for store in (one_each, all_in_one, by_slot)]
    finally:
        for prefix in prefixes:
            forget_redis_keys(url, prefix)
        await client.aclose()  # type: ignore[attr-defined]  # types-redis predates aclose


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps)
def test_many_customers_in_one_call_equal_one_call_each(redis_url: str, todo: list[Any]) -> None:
    one_each, all_in_one, by_slot = asyncio.run(compare(redis_url, todo))
    assert all_in_one == one_each
    assert by_slot == one_each


def test_a_batch_is_one_call_on_a_standalone_redis_and_one_per_slot_on_a_cluster() -> None:
    customers = [f"c-{i}" for i in range(300)]
    assert calls_by_slot(customers, False, 100) == [
        list(range(0, 100)),
        list(range(100, 200)),
        list(range(200, 300)),
    ]
    calls = calls_by_slot(customers, True, 100)
    assert sorted(i for call in calls for i in call) == list(range(300))
    for call in calls:
        assert len({key_slot(f"c:{customers[i]}".encode()) for i in call}) == 1
