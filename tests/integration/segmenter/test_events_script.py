"""APPLY_EVENTS against an independent model, on the real Redis: whatever the batches
(redeliveries, offsets going back, a topic created again with offsets from 0, a producer's retry
under a new offset, input from before an erasure, profile updates), the script says of each event
what the in-memory store (tests/unit/segmenter/memory_store.py) says, and the customer's state it
returns, and keeps, is the model's."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import redis.asyncio as aioredis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.segmenter.adapters.redis_keys import KeyLayout
from services.segmenter.adapters.redis_store import RedisCustomerStore
from services.segmenter.domain.customer import CustomerSnapshot, EventResult, EventWrite
from services.segmenter.domain.erasure import ErasureMark
from tests.support import TEST_PSEUDONYM_KEY, forget_redis_keys
from tests.unit.segmenter.memory_store import MemoryCustomerStore

CUSTOMERS = ["a", "b", "c"]
T = 1_800_000_000.0


def event_lists(customers: list[str]) -> st.SearchStrategy[list[tuple[str, int, int, int, str, int, int]]]:
    """Batches of events, each the arguments of `write`."""
    return st.lists(
        st.tuples(
            st.sampled_from(customers),
            st.integers(0, 1),  # partition
            st.integers(0, 6),  # offset: repeats and going back are redeliveries
            st.integers(0, 6),  # event id from a small pool: a producer's retry
            st.sampled_from(["click", "purchase", "profile_update"]),
            st.integers(0, 30),  # occurred_at, seconds after T
            st.integers(0, 30),  # record timestamp, seconds after T; 0 unknown
        ),
        min_size=1,
        max_size=15,
    )


events = event_lists(CUSTOMERS)
steps = st.lists(
    st.one_of(
        st.tuples(st.just("events"), events),
        st.tuples(st.just("erase"), st.sampled_from(CUSTOMERS), st.integers(0, 30)),
    ),
    min_size=1,
    max_size=6,
)


def write(customer: str, partition: int, offset: int, eid: int, kind: str, at: int, ts: int) -> EventWrite:
    amount = 10.25 + at if kind == "purchase" else None
    profile: dict[str, Any] = {"tier": f"t{at % 3}", "n": at} if kind == "profile_update" else {}
    timestamp_ms = int((T + ts) * 1000) if ts else 0
    return EventWrite(partition, offset, customer, f"e-{eid}", kind, T + at, amount, profile, timestamp_ms)


def comparable(snapshot: CustomerSnapshot) -> tuple[int, dict[str, Any]]:
    """The version and the features; the sum spent as a number (Redis and Python format it apart)."""
    features: dict[str, Any] = dict(snapshot.features)
    if "spend" in features:
        features["spend"] = round(float(features["spend"]), 6)
    return snapshot.version, features


def outcomes(results: list[EventResult]) -> list[Any]:
    return [None if r is None else (r[0], comparable(r[1])) for r in results]


async def run(url: str, todo: list[Any]) -> tuple[list[Any], list[Any]]:
    client = aioredis.Redis.from_url(url, decode_responses=True)
    prefix = f"t{uuid.uuid4().hex[:10]}."
    store, model = (
        RedisCustomerStore(client, KeyLayout(f"sw:{prefix}"), TEST_PSEUDONYM_KEY),
        MemoryCustomerStore(),
    )
    seen: list[Any] = []
    expected: list[Any] = []
    try:
        for step in todo:
            if step[0] == "events":
                writes = [write(*e) for e in step[1]]
                known = [(w.partition, w.customer_id) for w in writes]
                seen.append(outcomes(await store.apply_events(writes, known)))
                expected.append(outcomes(await model.apply_events(writes, known)))
            else:
                mark = ErasureMark(int((T + step[2]) * 1000))
                await store.mark_erased(step[1], mark)
                held = model.marks.get(step[1])
                model.marks[step[1]] = ErasureMark(max(mark.at_ms, held.at_ms if held else 0))
        for customer in CUSTOMERS:
            seen.append(comparable(await store.read(customer)))
            expected.append(comparable(await model.read(customer)))
        return seen, expected
    finally:
        forget_redis_keys(url, prefix)
        await client.aclose()  # type: ignore[attr-defined]  # types-redis predates aclose


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps)
def test_the_script_applies_events_as_the_model_does(redis_url: str, todo: list[Any]) -> None:
    seen, expected = asyncio.run(run(redis_url, todo))
    assert seen == expected


def test_a_topic_created_again_counts_its_events_as_new(redis_url: str) -> None:
    """The case the model was extended for, spelled out: offsets from 0 again, later records."""
    todo = [
        ("events", [("a", 0, 5, 1, "click", 1, 1)]),
        ("events", [("a", 0, 0, 2, "click", 9, 9), ("a", 0, 5, 1, "click", 1, 1)]),
    ]
    seen, expected = asyncio.run(run(redis_url, todo))
    assert seen == expected
    assert [applied for applied, _ in seen[1]] == [True, False]
    assert seen[2][1]["events"] == "2"
