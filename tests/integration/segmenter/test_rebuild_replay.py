"""The rebuild's replay, in-process against the real broker and Redis.

The fault it injects: after Redis was lost, a batch's features were written to the new Redis but
its customers were never added to the known index (its write failed, or the worker died between
the two). The rebuild drops the features of the customers it knows, so it missed this one, and
the replay refused their earlier events as redeliveries: their offsets were below the one the
batch had applied. Spend and counts came back as the last batch alone. And the property behind
the fix, against the in-memory model: a replay under a new number, whatever Redis held before
(batches of the stream, an earlier replay cut short), gives each customer the features of the
partition's records applied once.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from aiokafka import AIOKafkaProducer
from aiokafka.structs import ConsumerRecord
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.segmenter.adapters.redis_keys import KeyLayout
from services.segmenter.adapters.redis_store import RedisCustomerStore, activity_score
from services.segmenter.domain.erasure import ErasureMark
from services.segmenter.handlers import event_write
from services.segmenter.rebuild import StateRebuilder
from services.segmenter.settings import SegmenterSettings
from shared.events import CustomerEvent, new_event_id
from shared.kafka import ensure_topics
from tests.integration.segmenter.test_events_script import CUSTOMERS, comparable, write
from tests.integration.segmenter.test_idempotence import World
from tests.support import TEST_PSEUDONYM_KEY, forget_redis_keys
from tests.unit.segmenter.memory_store import MemoryCustomerStore


def purchase(customer: str, amount: float) -> CustomerEvent:
    return CustomerEvent(
        event_id=new_event_id(),
        customer_id=customer,
        type="purchase",
        occurred_at=datetime.now(UTC),
        source="test",
        attributes={"amount": amount, "currency": "EUR"},
    )


async def produce(settings: SegmenterSettings, events: list[CustomerEvent]) -> list[ConsumerRecord]:
    """The events on customer.events, as the consumer reads them back."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers)
    await producer.start()
    try:
        records = []
        for event in events:
            key, value = event.customer_id.encode(), event.to_bytes()
            meta = await producer.send_and_wait(f"{settings.topic_prefix}customer.events", value, key)
            at = (meta.topic, meta.partition, meta.offset, meta.timestamp)
            records.append(ConsumerRecord(*at, 0, key, value, None, 0, 0, ()))
        return records
    finally:
        await producer.stop()


async def rebuild(store: RedisCustomerStore, settings: SegmenterSettings, end: int) -> None:
    """Partition 0 rebuilt, the event follower being at `end`."""
    world = World(store)

    async def untracked(partition: int, customer_id: str) -> None:
        pass

    async def positions(partitions: Any) -> dict[int, int | None]:
        return dict.fromkeys(partitions, end)

    rebuilder = StateRebuilder(settings, store, world.registry, world.membership, positions, untracked)
    await rebuilder.rebuild([0], await positions([0]))


@pytest.fixture
async def one_partition(kafka_bootstrap: str, topic_prefix: str, tmp_path: Path) -> SegmenterSettings:
    """One partition of the test's own topics."""
    chosen = SegmenterSettings(
        kafka_bootstrap_servers=kafka_bootstrap,
        topic_prefix=topic_prefix,
        topic_partitions=1,
        data_dir=tmp_path,
    )
    await asyncio.to_thread(ensure_topics, chosen)
    return chosen


async def test_a_customer_written_but_never_remembered_is_rebuilt_from_all_their_events(
    store: RedisCustomerStore, one_partition: SegmenterSettings
) -> None:
    events = [purchase("c-1", amount) for amount in (10.0, 20.0, 30.0)]
    records = await produce(one_partition, events)
    # Redis was lost after the first two; the third was applied to the new one, not remembered.
    await store.apply_events([event_write(records[2], events[2])], [])
    await rebuild(store, one_partition, records[-1].offset + 1)
    features = (await store.read("c-1")).features
    assert (features["purchases"], float(features["spend"]), features["events"]) == ("3", 60.0, "3")
    # And remembered now, with its last activity: the replay's reply carries only that field.
    latest = max(event.occurred_at.timestamp() for event in events)
    assert await store.known_scores(0, ["c-1"]) == [float(activity_score(latest))]


async def test_the_replay_gives_an_erased_customer_no_state_back(
    store: RedisCustomerStore, one_partition: SegmenterSettings
) -> None:
    """Starting a customer over writes their replay number only once an event of theirs is
    applied: an erasure's marker refusing every one (here without its request on the topic, so
    the script alone refuses them) leaves no hash behind."""
    records = await produce(one_partition, [purchase("c-2", 10.0), purchase("c-2", 20.0)])
    await store.mark_erased("c-2", ErasureMark(at_ms=int(time.time() * 1000) + 1))
    await rebuild(store, one_partition, records[-1].offset + 1)
    assert not await store.holds("c-2")
    assert await store.known_scores(0, ["c-2"]) == [None]


# A partition's records: (customer, kind, occurred_at); offsets 0.. and record timestamps rise.
topics = st.lists(
    st.tuples(
        st.sampled_from(CUSTOMERS),
        st.sampled_from(["click", "purchase", "profile_update"]),
        st.integers(0, 30),
    ),
    min_size=1,
    max_size=12,
)
# What Redis held before the replay: batches of the records (any of them, in offset order, again
# and again), applied by the stream (its customers not remembered: the known index lost) or by an
# earlier replay that did not finish.
before = st.lists(st.tuples(st.sampled_from(["", "1"]), st.lists(st.integers(0, 11), max_size=8)), max_size=4)


async def replayed(
    url: str, topic: list[tuple[str, str, int]], earlier: list[Any], size: int
) -> tuple[Any, Any]:
    writes = [
        write(customer, 0, offset, offset, kind, at, offset + 1)
        for offset, (customer, kind, at) in enumerate(topic)
    ]
    client = aioredis.Redis.from_url(url, decode_responses=True)
    prefix = f"t{uuid.uuid4().hex[:10]}."
    store, model = (
        RedisCustomerStore(client, KeyLayout(f"sw:{prefix}"), TEST_PSEUDONYM_KEY),
        MemoryCustomerStore(),
    )
    try:
        for number, picked in earlier:
            await store.apply_events([writes[i] for i in sorted(set(picked)) if i < len(writes)], [], number)
        for start in range(0, len(writes), size):
            await store.apply_events(writes[start : start + size], [(0, w.customer_id) for w in writes], "2")
        await model.apply_events(writes, [])
        seen = [comparable(await store.read(c))[1] for c in CUSTOMERS]
        expected = [comparable(await model.read(c))[1] for c in CUSTOMERS]
        return seen, expected
    finally:
        forget_redis_keys(url, prefix)
        await client.aclose()  # type: ignore[attr-defined]  # types-redis predates aclose


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(topics, before, st.integers(1, 5))
def test_a_replay_from_any_earlier_state_gives_the_features_of_its_records_applied_once(
    redis_url: str, topic: list[tuple[str, str, int]], earlier: list[Any], size: int
) -> None:
    """Against the in-memory model applying the partition once to an empty store."""
    seen, expected = asyncio.run(replayed(redis_url, topic, earlier, size))
    assert seen == expected
