"""Redis is a cache that can be lost: the segmenter notices, fails closed, rebuilds and re-announces.

Each test runs the segmenter as a process against the real broker and its OWN redis-server on
a free port (never the shared one), then empties that Redis: FLUSHDB while running, and a
restart of a Redis that keeps nothing on disk.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from aiokafka import AIOKafkaConsumer, TopicPartition

from services.segmenter.adapters.redis_keys import CONSENT, SEGMENT, KeyLayout
from services.segmenter.membership_state import last_announced
from shared.events import (
    ConsentStateSnapshot,
    ErasureRequested,
    MembershipChanged,
    PurposeState,
    new_event_id,
)
from tests.integration.segmenter.conftest import (
    ADMIN,
    FAST,
    Inputs,
    Outputs,
    RedisView,
    membership_io,
    put_segment,
    wait_until,
    wait_until_async,
)
from tests.support import OwnRedis, http_client, index_remove, wait_for

REBUILDING = "redis: rebuilding after data loss"


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    server = OwnRedis(tmp_path / "redis").start()
    yield server
    server.stop()


class Announcements(Outputs):
    """segment.membership as received, and the wall-clock time each message arrived."""

    def __init__(self) -> None:
        super().__init__()
        self.received: list[tuple[float, MembershipChanged]] = []

    def arrive(self, message: MembershipChanged) -> None:
        self.messages.append(message)
        self.received.append((time.time(), message))

    def last(self, customer: str, segment: str) -> MembershipChanged | None:
        found = self.of(customer, segment)
        return found[-1] if found else None


@pytest.fixture
async def io(kafka_bootstrap: str, topic_prefix: str) -> AsyncIterator[tuple[Inputs, Announcements]]:
    announcements = Announcements()
    async with membership_io(kafka_bootstrap, topic_prefix, announcements.arrive) as inputs:
        yield inputs, announcements


async def record_consent(inputs: Inputs, customer: str, status: str) -> None:
    """What the consent service publishes for one choice: the change, then the customer's state."""
    change = await inputs.consent(customer, "marketing_email", status)
    state = PurposeState(status=change.status, effective=status == "granted", recorded_at=change.recorded_at)
    snapshot = ConsentStateSnapshot(
        event_id=new_event_id(),
        customer_id=customer,
        purposes={"marketing_email": state},
        updated_at=change.recorded_at,
    )
    await inputs.send("consent.state", customer, snapshot.to_bytes())


async def announced_state(kafka_bootstrap: str, topic: str) -> dict[tuple[str, str], Any]:
    """What a campaign tool reads from segment.membership.state: the last value per key."""
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer.topics()
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
        consumer.assign(partitions)
        await consumer.seek_to_beginning()
        ends = await consumer.end_offsets(partitions)
        records: list[Any] = []

        async def behind() -> bool:
            return any([await consumer.position(tp) < ends[tp] for tp in partitions])

        while await behind():
            for batch in (await consumer.getmany(timeout_ms=200)).values():
                records.extend(batch)
        return dict(last_announced(records))
    finally:
        await consumer.stop()


async def members_joined(inputs: Inputs, announcements: Announcements, customers: list[str]) -> None:
    for customer in customers:
        await record_consent(inputs, customer, "granted")
        await inputs.event(customer, "click")
    for customer in customers:
        await wait_until(partial(announcements.find, customer, "mail", "joined"), what=f"{customer} joined")


async def test_flushdb_while_running_then_an_opt_out_is_announced(
    start_service: Any, own_redis: OwnRedis, io: Any, topic_prefix: str, kafka_bootstrap: str
) -> None:
    inputs, announcements = io
    service = start_service("segmenter", REDIS_URL=own_redis.url, **FAST).wait_ready()
    with httpx.Client(base_url=service.url, headers=ADMIN) as api:
        put_segment(api, "mail", "event_count >= 1", "marketing_email")
    await members_joined(inputs, announcements, ["c-out", "c-stay", "c-gone"])
    view = RedisView(redis.Redis.from_url(own_redis.url, decode_responses=True), topic_prefix)
    erasure = ErasureRequested(event_id=new_event_id(), customer_id="c-gone", requested_at=datetime.now(UTC))
    await inputs.send("consent.state", "c-gone", None)  # what the consent service publishes on erasure
    await inputs.send("erasure.requests", "c-gone", erasure.to_bytes())
    await wait_until(lambda: announcements.find("c-gone", "mail", "left"), 30, "the erased customer's left")
    await wait_until(lambda: view.features("c-gone") == {}, 30, "the erasure")

    view.client.flushdb()
    await inputs.event("c-stay", "click")  # likely applied before the loss is noticed
    await record_consent(inputs, "c-out", "denied")

    left = await wait_until(lambda: announcements.find("c-out", "mail", "left"), 60, "the opt-out's left")
    assert left.reason == "consent_withdrawn"
    await wait_until(lambda: "c-stay" in view.members("mail"), 30, "the consented member rebuilt in Redis")
    # Both events count once: the one from before the loss (replayed) and the one after it.
    await wait_until(lambda: view.features("c-stay").get("events") == "2", 30, "both events counted")
    assert view.segments_of("c-stay") == {"mail"}
    assert view.features("c-gone") == {}, "the replay brought an erased customer's events back"
    assert announcements.last("c-stay", "mail").action == "joined"
    assert "c-out" not in view.members("mail")
    state = await announced_state(kafka_bootstrap, topic_prefix + "segment.membership.state")
    assert ("mail", "c-stay") in state and ("mail", "c-out") not in state
    metrics = http_client.get(f"{service.url}/metrics").text
    assert 'segwarden_segmenter_redis_rebuilds_total{cause="lost"} 1.0' in metrics


async def test_redis_restart_fails_closed_rebuilds_and_announces(
    start_service: Any, own_redis: OwnRedis, io: Any, topic_prefix: str
) -> None:
    inputs, announcements = io
    # The rebuild's replay fails three times in a row (retried with backoff), so it lasts seconds.
    failpoints = "segmenter.rebuild_mid_replay=raise@1x3"
    service = start_service("segmenter", REDIS_URL=own_redis.url, FAILPOINTS=failpoints, **FAST).wait_ready()
    with httpx.Client(base_url=service.url, headers=ADMIN) as api:
        put_segment(api, "mail", "event_count >= 1", "marketing_email")
    await members_joined(inputs, announcements, ["c-out", "c-stay"])
    await record_consent(inputs, "c-late", "granted")  # consented, no event yet: not a member
    view = RedisView(redis.Redis.from_url(own_redis.url, decode_responses=True), topic_prefix)
    await wait_until(lambda: view.consent("c-late", "marketing_email"), what="c-late")

    own_redis.stop()
    await record_consent(inputs, "c-out", "denied")  # while Redis is down
    own_redis.start()  # empty: it kept nothing on disk

    seen: list[tuple[float, str]] = []  # (time, readiness reason of redis) while the rebuild runs

    async def readiness() -> str | None:
        response = await asyncio.to_thread(httpx.get, f"{service.url}/readyz", timeout=5)
        if response.status_code == 200:
            return None
        reason = str(response.json()["reasons"].get("redis", ""))
        seen.append((time.time(), reason))
        return reason

    await wait_until_async(lambda: _is(readiness(), REBUILDING), 60, "readyz 503 with the rebuild reason")
    await inputs.event("c-late", "click")  # its join is decided during the rebuild: held back
    await wait_until_async(lambda: _is(readiness(), None), 90, "ready again after the rebuild")
    rebuilding = [t for t, reason in seen if reason == REBUILDING]
    assert rebuilding, "readyz never said the rebuild was under way"

    left = await wait_until(
        lambda: announcements.find("c-out", "mail", "left"), 30, "the left of the opt-out"
    )
    assert left.reason == "consent_withdrawn"
    assert announcements.last("c-stay", "mail").action == "joined"
    await wait_until(lambda: announcements.find("c-late", "mail", "joined"), 30, "c-late announced after")
    assert {"c-stay", "c-late"} <= view.members("mail") and "c-out" not in view.members("mail")
    joins_meanwhile = [
        m for t, m in announcements.received if m.action == "joined" and rebuilding[0] <= t <= rebuilding[-1]
    ]
    assert joins_meanwhile == [], "a joined was published while readyz said the rebuild was under way"
    metrics = http_client.get(f"{service.url}/metrics").text
    assert "segwarden_segmenter_joins_withheld_total" in metrics
    assert "segwarden_segmenter_redis_rebuilding 0.0" in metrics


async def _is(reason: Any, expected: str | None) -> bool:
    try:
        return await reason == expected
    except httpx.HTTPError:
        return False


async def test_a_new_owner_announces_what_its_predecessor_committed_but_never_did(
    start_service: Any, own_redis: OwnRedis, io: Any, topic_prefix: str, tmp_path: Path
) -> None:
    inputs, announcements = io
    first = start_service("segmenter", REDIS_URL=own_redis.url, **FAST).wait_ready()
    with httpx.Client(base_url=first.url, headers=ADMIN) as api:
        put_segment(api, "mail", "event_count >= 1", "marketing_email")
    await members_joined(inputs, announcements, ["c-x"])
    first.kill()
    # What the dead owner committed and never announced: a withdrawal (its outbox lost with it).
    view = RedisView(redis.Redis.from_url(own_redis.url, decode_responses=True), topic_prefix)
    view.client.hset(view.state("c-x"), CONSENT + "marketing_email", f"denied||{time.time()!r}")
    view.client.hdel(view.state("c-x"), SEGMENT + "mail")
    index_remove(view.client, KeyLayout(view.ns).members("mail"), "c-x")

    start_service("segmenter", REDIS_URL=own_redis.url, DATA_DIR=str(tmp_path / "next"), **FAST)
    left = await wait_until(lambda: announcements.find("c-x", "mail", "left"), 90, "the new owner's left")
    assert left.reason == "consent_withdrawn"


async def events_committed(kafka_bootstrap: str, topic_prefix: str) -> bool:
    """Whether the segmenter's event reader committed every customer.events record: none is
    delivered again to the next worker (a redelivery repairs the member sets by itself)."""
    group = f"{topic_prefix}segwarden-segmenter-events"
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        topic = topic_prefix + "customer.events"
        await consumer.topics()
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
        ends = await consumer.end_offsets(partitions)
        return all([(await consumer.committed(tp) or 0) >= ends[tp] for tp in partitions])
    finally:
        await consumer.stop()


async def test_a_rebuild_killed_between_a_silent_join_and_its_member_set_is_put_right_by_the_next_owner(
    start_service: Any, own_redis: OwnRedis, io: Any, topic_prefix: str, tmp_path: Path, kafka_bootstrap: str
) -> None:
    inputs, announcements = io
    # Killed the first time the rebuild commits a decision: the slot holds it, the member set not.
    failpoints = "segmenter.rebuild_after_settle_commit=kill"
    first = start_service(
        "segmenter", REDIS_URL=own_redis.url, DATA_DIR=str(tmp_path / "w1"), FAILPOINTS=failpoints, **FAST
    ).wait_ready()
    with httpx.Client(base_url=first.url, headers=ADMIN) as api:
        put_segment(api, "mail", "event_count >= 1", "marketing_email")
    await members_joined(inputs, announcements, ["c-y"])
    await wait_until_async(partial(events_committed, kafka_bootstrap, topic_prefix), 60, "offsets committed")
    view = RedisView(redis.Redis.from_url(own_redis.url, decode_responses=True), topic_prefix)

    view.client.flushdb()
    assert first.process is not None
    await wait_until(lambda: first.process.poll() is not None, 60, "the rebuild killed mid-way")
    assert view.segments_of("c-y") == {"mail"} and "c-y" not in view.members("mail")

    second = start_service("segmenter", REDIS_URL=own_redis.url, DATA_DIR=str(tmp_path / "w2"), **FAST)
    # The next owner rebuilds (the partitions were never marked built) and reconciles: nothing to
    # decide or announce for c-y, so only the reconciler can bring the member set back in line.
    await wait_until(lambda: "c-y" in view.members("mail"), 90, "c-y listed as a member again")
    # c-y never stopped matching: no `left` at all (the next owner's start-up re-evaluation of
    # every segment, run on a partition it was still rebuilding, announced `segment_changed`).
    assert [m.action for m in announcements.of("c-y", "mail")] == ["joined"]
    rebuilds = metric_value(second.url, 'segwarden_segmenter_redis_rebuilds_total{cause="takeover"}')
    assert rebuilds >= 1


def metric_value(url: str, line_start: str) -> float:
    for line in http_client.get(f"{url}/metrics").text.splitlines():
        if line.startswith(line_start):
            return float(line.split()[-1])
    return 0.0


async def test_two_workers_each_rebuild_their_partitions_and_a_survivor_takes_over(
    start_service: Any, own_redis: OwnRedis, io: Any, topic_prefix: str, tmp_path: Path
) -> None:
    inputs, announcements = io
    env = {"REDIS_URL": own_redis.url, **FAST}
    first = start_service("segmenter", DATA_DIR=str(tmp_path / "w1"), **env)
    second = start_service("segmenter", DATA_DIR=str(tmp_path / "w2"), **env)
    first.wait_ready(), second.wait_ready()
    owned = "segwarden_segmenter_owned_partitions "
    wait_for(
        lambda: metric_value(first.url, owned) >= 1 and metric_value(second.url, owned) >= 1, 60, "a split"
    )
    with httpx.Client(base_url=first.url, headers=ADMIN) as api:
        put_segment(api, "mail", "event_count >= 1", "marketing_email")
    customers = [f"c-{i}" for i in range(9)]  # spread over the three partitions
    await members_joined(inputs, announcements, customers)
    view = RedisView(redis.Redis.from_url(own_redis.url, decode_responses=True), topic_prefix)

    view.client.flushdb()
    for customer in customers[:3]:
        await record_consent(inputs, customer, "denied")
    for customer in customers[:3]:
        left = await wait_until(partial(announcements.find, customer, "mail", "left"), 60, f"{customer} left")
        assert left.reason == "consent_withdrawn"
    await wait_until(lambda: view.members("mail") == set(customers[3:]), 60, "the consented members rebuilt")
    for worker in (first, second):
        rebuilds = metric_value(worker.url, 'segwarden_segmenter_redis_rebuilds_total{cause="lost"}')
        rebuilds += metric_value(worker.url, 'segwarden_segmenter_redis_rebuilds_total{cause="replaced"}')
        assert rebuilds >= 1, "a worker did not notice the loss"

    first.kill()
    wait_for(lambda: metric_value(second.url, owned) == 3, 90, "the survivor owning every partition")
    for customer in customers[3:6]:
        await record_consent(inputs, customer, "denied")
    for customer in customers[3:6]:
        await wait_until(partial(announcements.find, customer, "mail", "left"), 60, f"{customer} left")
    assert view.members("mail") == set(customers[6:])
    assert all(announcements.last(c, "mail").action == "joined" for c in customers[6:])
