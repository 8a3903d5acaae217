"""The dedicated consent consumer against the real broker: a revocation mid-batch and a crash
mid-batch neither end it nor lose a consent change; it and the event consumer say when their
input waits (what the passes over every customer give way to)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.structs import ConsumerRecord

from services.segmenter.adapters.kafka_consent import KafkaConsentFollower
from services.segmenter.adapters.kafka_events import KafkaEventFollower
from services.segmenter.domain.ports import ConsentPartitionMovedError
from shared import failpoints
from shared.kafka import ensure_topics
from shared.settings import ServiceSettings
from shared.supervise import Supervisor
from shared.topics import TopicPlan
from tests.integration.segmenter.conftest import wait_until

PER_PARTITION = 20


@pytest.fixture
async def topic(kafka_bootstrap: str, topic_prefix: str) -> AsyncIterator[tuple[ServiceSettings, str]]:
    settings = ServiceSettings(kafka_bootstrap_servers=kafka_bootstrap, topic_prefix=topic_prefix)
    name = f"{topic_prefix}consent.changes"
    await asyncio.to_thread(ensure_topics, settings, [TopicPlan(name, 2, {})])
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        for partition in (0, 1):
            for i in range(PER_PARTITION):
                await producer.send(name, f"{partition}-{i}".encode(), key=b"k", partition=partition)
        await producer.flush()
    finally:
        await producer.stop()
    yield settings, name
    failpoints.configure("")


def customer_on(follower: KafkaConsentFollower, partition: int) -> str:
    """A customer whose consent changes go to `partition`."""
    return next(c for c in (f"c{i}" for i in range(1000)) if follower.partition_of(c) == partition)


@asynccontextmanager
async def recording(
    settings: ServiceSettings, name: str, group_id: str
) -> AsyncIterator[tuple[KafkaConsentFollower, list[str], Supervisor]]:
    """A follower of both partitions, running under a supervisor, that records each change it handles."""
    handled: list[str] = []

    async def handle(record: ConsumerRecord) -> None:
        handled.append(record.value.decode())

    follower = KafkaConsentFollower(settings, name, group_id, handle)
    await follower.start()
    supervisor = Supervisor()
    try:
        await follower.follow([0, 1])
        supervisor.spawn("consent-follower", follower.run)
        yield follower, handled, supervisor
    finally:
        await supervisor.stop()
        await follower.stop()


async def committed(follower: KafkaConsentFollower, topic: str, partition: int) -> int:
    assert follower.consumer is not None
    return await follower.consumer.committed(TopicPartition(topic, partition)) or 0


async def test_a_revocation_mid_batch_commits_only_what_is_still_owned(
    topic: tuple[ServiceSettings, str], topic_prefix: str
) -> None:
    settings, name = topic
    handled: list[str] = []
    revoke: asyncio.Task[None] | None = None

    async def handle(record: ConsumerRecord) -> None:
        nonlocal revoke
        handled.append(record.value.decode())
        if record.value == b"0-3" and revoke is None:
            # What faust's revocation callback does, while this change is in flight.
            revoke = asyncio.create_task(follower.follow([1]))
            await asyncio.sleep(0)  # the revocation now waits for this change to be done

    follower = KafkaConsentFollower(settings, name, f"{topic_prefix}follower", handle)
    await follower.start()
    supervisor = Supervisor()
    try:
        await follower.follow([0, 1])
        task = supervisor.spawn("consent-follower", follower.run)
        await wait_until(lambda: sum(v[0] == "1" for v in handled) == PER_PARTITION, what="partition 1")
        assert not task.done(), "the follower ended after the revocation"
        assert supervisor.not_ready() is None  # it did not crash either
        assert "0-4" not in handled  # nothing of partition 0 was handled after its revocation
        assert await committed(follower, name, 0) <= 4  # never past what was handled
        # Assigned again (a takeover): every change of partition 0 is handled from the last commit.
        await follower.follow([0, 1])
        want = {f"0-{i}" for i in range(PER_PARTITION)}
        await wait_until(lambda: want <= set(handled), what="partition 0 after the reassignment")
    finally:
        await supervisor.stop()
        await follower.stop()


async def test_a_crash_mid_batch_is_restarted_and_the_batch_is_read_again(
    topic: tuple[ServiceSettings, str], topic_prefix: str
) -> None:
    settings, name = topic
    failpoints.configure("segmenter.consent_mid_batch=raise@3")  # after the third change
    async with recording(settings, name, f"{topic_prefix}follower") as (_, handled, supervisor):
        want = {f"{p}-{i}" for p in (0, 1) for i in range(PER_PARTITION)}
        await wait_until(lambda: want <= set(handled), what="every change after the crash")
        assert len(handled) > len(want)  # the failed batch was read again, not skipped
        assert "InjectedFaultError" in supervisor.reasons()["consent-follower"]


async def test_the_barrier_gives_up_at_once_on_a_partition_not_followed_here(
    topic: tuple[ServiceSettings, str], topic_prefix: str
) -> None:
    """A customer whose consent partition this worker does not follow (moved away in a
    rebalance) never settles here: `settled` says so at once, also when the partition goes away
    while it waits, instead of holding the joins for the whole timeout (an hour here: a wait
    for it would end the test by its own limit, not by the error)."""
    settings, name = topic
    follower = KafkaConsentFollower(
        settings, name, f"{topic_prefix}follower", lambda record: asyncio.sleep(0)
    )
    await follower.start()
    try:
        await follower.follow([0, 1])
        first = {p: customer_on(follower, p) for p in (0, 1)}
        await follower.follow([0])
        with pytest.raises(ConsentPartitionMovedError, match=r"\[1\] are not followed"):
            await asyncio.wait_for(follower.settled([first[0], first[1]], timeout=3600), 60)
        # Partition 0 is followed but not read (the follower does not run), so `settled` cannot
        # return: it waits, until the partition goes away too.
        await follower.follow([0, 1])
        waiting = asyncio.create_task(follower.settled([first[0]], timeout=3600))
        await follower.follow([1])
        with pytest.raises(ConsentPartitionMovedError, match=r"\[0\] are not followed"):
            await asyncio.wait_for(waiting, 60)
    finally:
        await follower.stop()


async def test_the_barrier_does_not_wait_behind_the_follower_s_fetch(
    topic: tuple[ServiceSettings, str], topic_prefix: str
) -> None:
    """Once every change is handled, `settled` returns without waiting for the follower's fetch in
    flight, which the broker holds for the whole fetch wait (5 s here) when nothing is new: its
    ListOffsets go on a connection of their own. On the follower's, they were answered only
    after that fetch, about 5 s later, past the 2.5 s allowed here."""
    settings, name = topic
    slow_fetch = settings.model_copy(update={"kafka_fetch_max_wait_ms": 5000})
    async with recording(slow_fetch, name, f"{topic_prefix}follower") as (follower, handled, _):
        await wait_until(lambda: len(handled) == 2 * PER_PARTITION, what="every change")
        customers = [customer_on(follower, 0), customer_on(follower, 1)]
        for _ in range(3):  # each time behind a fetch that has just gone out, or is well under way
            await asyncio.wait_for(follower.settled(customers), 2.5)


async def test_readyz_names_the_consent_follower_while_it_keeps_failing(start_service, kafka_io) -> None:
    inputs, _ = kafka_io
    segmenter = start_service("segmenter", FAILPOINTS="segmenter.consent_mid_batch=raise@1x100000")
    await asyncio.to_thread(segmenter.wait_ready, 90)
    await inputs.consent("c-failing", "marketing_email", "granted")

    async def failing() -> str | None:
        async with httpx.AsyncClient() as client:
            response = await client.get(f"{segmenter.url}/readyz")
        reason = response.json().get("reasons", {}).get("tasks", "")
        return reason if response.status_code == 503 and "consent-follower: failed" in reason else None

    deadline = asyncio.get_running_loop().time() + 30
    while (reason := await failing()) is None:
        assert asyncio.get_running_loop().time() < deadline, "no failing consent-follower on /readyz"
        await asyncio.sleep(0.1)
    assert "InjectedFaultError at failpoints.py" in reason


async def test_an_event_batch_gives_way_to_the_changes_fetched_until_they_are_handled_or_failed(
    topic: tuple[ServiceSettings, str], topic_prefix: str
) -> None:
    """`give_way` (awaited before each event batch) returns once the fetched changes are handled,
    and also when their handling failed (they are read again later): it never hangs on them.
    `waiting` (what the passes over every customer pause for) says so meanwhile."""
    settings, name = topic
    handled: list[str] = []
    release = asyncio.Event()

    async def handle(record: ConsumerRecord) -> None:
        if record.value in (b"0-5", b"1-5"):
            await release.wait()
            if not handled_once.setdefault(record.value, False):
                handled_once[record.value] = True
                raise RuntimeError("the first try of a change fails")
        handled.append(record.value.decode())

    handled_once: dict[bytes, bool] = {}
    follower = KafkaConsentFollower(settings, name, f"{topic_prefix}follower", handle)
    await follower.start()
    supervisor = Supervisor()
    try:
        await follower.follow([0, 1])
        supervisor.spawn("consent-follower", follower.run)
        await wait_until(lambda: "0-4" in handled or "1-4" in handled, what="a change in flight")
        in_flight = "0" if "0-4" in handled else "1"
        waiting = asyncio.create_task(follower.give_way())
        for _ in range(20):
            await asyncio.sleep(0)
        assert not waiting.done(), "an event batch went ahead of a change being handled"
        assert await follower.waiting()  # and the passes over every customer pause (pacing.py)
        release.set()
        await waiting  # the failed round counts as done: the batch goes on, the change comes again
        assert supervisor.reasons()["consent-follower"].startswith("failed 1 time(s)")
        want = {f"{p}-{i}" for p in (0, 1) for i in range(PER_PARTITION)}
        await wait_until(lambda: want <= set(handled), what="every change after the failure")
        assert f"{in_flight}-5" in handled
        await follower.give_way()  # nothing fetched is left: no wait
        assert not await follower.waiting()
    finally:
        await supervisor.stop()
        await follower.stop()


async def test_the_event_follower_says_events_wait_until_every_record_is_handled(
    topic: tuple[ServiceSettings, str], topic_prefix: str
) -> None:
    """`KafkaEventFollower.waiting` (what the passes over every customer pause for) holds from
    the first batch until the last record is handled, between batches too, whatever partition
    has yet to commit in this process; then it does not."""
    settings, name = topic
    handled: list[str] = []
    release = asyncio.Event()
    seen: list[tuple[int, bool]] = []  # (records handled, waiting) between batches

    async def handle(records: list[ConsumerRecord]) -> None:
        await release.wait()
        handled.extend(r.value.decode() for r in records)

    async def watch() -> None:
        while len(handled) < 2 * PER_PARTITION:
            seen.append((len(handled), await follower.waiting()))
            await asyncio.sleep(0)

    follower = KafkaEventFollower(settings, name, f"{topic_prefix}events", (5, 0.05), handle)
    await follower.start()
    supervisor = Supervisor()
    try:
        await follower.follow([0, 1])
        supervisor.spawn("event-follower", follower.run)
        deadline = asyncio.get_running_loop().time() + 30
        while not await follower.waiting():
            assert asyncio.get_running_loop().time() < deadline, "no batch in flight"
            await asyncio.sleep(0.05)
        watcher = asyncio.create_task(watch())
        release.set()
        await wait_until(lambda: len(handled) == 2 * PER_PARTITION, what="every record")
        await watcher
        assert len({n for n, _ in seen}) > 2  # watched across several batches
        assert all(waiting for _, waiting in seen)
        await wait_until(lambda: follower.committed == {0: PER_PARTITION, 1: PER_PARTITION}, what="commits")
        assert not await follower.waiting()
    finally:
        await supervisor.stop()
        await follower.stop()
