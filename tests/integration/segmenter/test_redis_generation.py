"""The generation marker against a real Redis (this test's own keys): loss, replacement, upgrade."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import pytest
import redis.asyncio as aioredis

from services.segmenter.adapters.redis_buckets import BucketedIndex
from services.segmenter.adapters.redis_generation import RedisGenerationMarker
from services.segmenter.adapters.redis_keys import KeyLayout
from services.segmenter.recovery import RedisRecovery
from shared.supervise import Supervisor, within


@pytest.fixture
async def client(redis_url: str, topic_prefix: str) -> AsyncIterator[aioredis.Redis]:
    redis = aioredis.Redis.from_url(redis_url, decode_responses=True)
    yield redis
    keys = [key async for key in redis.scan_iter(f"sw:{topic_prefix}*")]
    if keys:
        await redis.delete(*keys)
    await redis.aclose()  # type: ignore[attr-defined]


def recovery(client: aioredis.Redis, prefix: str, data_dir: Path) -> RedisRecovery:
    marker = RedisGenerationMarker(client, f"sw:{prefix}", data_dir, 3)
    unused: Any = None  # check() never rebuilds: the run loop does
    return RedisRecovery(marker, unused, unused, [KeyLayout(f"sw:{prefix}").known(p) for p in range(3)])


async def test_first_start_loss_and_replacement(
    client: aioredis.Redis, topic_prefix: str, tmp_path: Path
) -> None:
    first = recovery(client, topic_prefix, tmp_path / "a")
    await first.check()
    generation = first.generation
    assert first.cause == "first_start" and first.closed == {0, 1, 2}
    assert (tmp_path / "a" / "redis-generation").read_text().strip() == generation
    assert (tmp_path / "a" / "redis-generation").stat().st_mode & 0o777 == 0o600
    for partition in range(3):
        await first.marker.mark_rebuilt(partition, str(generation))

    restarted = recovery(client, topic_prefix, tmp_path / "a")  # same data dir, intact Redis
    await restarted.check()
    assert restarted.cause is None and restarted.closed == set() and restarted.generation == generation

    other_worker = recovery(client, topic_prefix, tmp_path / "b")  # empty data dir: adopts
    await other_worker.check()
    assert other_worker.cause is None and other_worker.generation == generation

    await client.delete(f"sw:{topic_prefix}generation")  # FLUSHDB-like, of this test's keys only
    await restarted.check()
    assert restarted.cause == "lost" and restarted.closed == {0, 1, 2}
    assert restarted.generation not in (None, generation)
    assert await client.get(f"sw:{topic_prefix}rebuilt:0") is None

    await other_worker.check()  # saw the old generation: another marker now
    assert other_worker.cause == "replaced" and other_worker.generation == restarted.generation


async def test_data_from_before_the_marker_is_kept(
    client: aioredis.Redis, topic_prefix: str, tmp_path: Path
) -> None:
    await BucketedIndex(client).add(KeyLayout(f"sw:{topic_prefix}").known(1), {"c-1": 0.0})
    upgraded = recovery(client, topic_prefix, tmp_path)
    await upgraded.check()
    assert upgraded.cause is None and upgraded.closed == set()


async def test_the_gate_notices_a_loss_before_a_join_goes_out(
    client: aioredis.Redis, topic_prefix: str, tmp_path: Path
) -> None:
    worker = recovery(client, topic_prefix, tmp_path)
    await worker.check()
    for partition in range(3):
        await worker.marker.mark_rebuilt(partition, str(worker.generation))
    await worker.check()
    worker.cause = None
    assert await worker.closed_partitions() == set()
    await client.delete(f"sw:{topic_prefix}generation")
    assert await worker.closed_partitions() == {0, 1, 2} and worker.cause == "lost"


class EventFollower:
    """What the recovery sees of the event follower: a position that each batch taken advances."""

    def __init__(self) -> None:
        self.position = 0  # the next offset the consumer returns
        self.applied = 0  # the end of the last batch applied

    async def run(self, recovery: RedisRecovery) -> None:
        while True:
            self.position += 10  # a batch taken from the consumer...
            async with recovery.admit([0]):
                self.applied = self.position  # ...and applied, unless its partition is held
            await asyncio.sleep(0)


class Rebuilder:
    """Records what the rebuild was to replay, against what had been applied when it started."""

    def __init__(self, follower: EventFollower) -> None:
        self.follower = follower
        self.rebuilt = asyncio.Event()
        self.stops: dict[int, int | None] = {}
        self.applied = -1

    async def positions(self, partitions: list[int]) -> dict[int, int | None]:
        position = self.follower.position
        await asyncio.sleep(0)  # as the real one, whose answer comes back through the event loop
        return dict.fromkeys(partitions, position)

    async def rebuild(self, partitions: list[int], positions: dict[int, int | None]) -> None:
        self.stops, self.applied = positions, self.follower.applied
        self.rebuilt.set()


class Reconciler:
    async def reconcile(self, partitions: list[int]) -> None:
        pass


async def test_the_replay_reaches_every_batch_applied_before_it(
    client: aioredis.Redis, topic_prefix: str, tmp_path: Path
) -> None:
    """The fault suite lost a customer's events after a Redis restart: a batch applied between the
    reading of the follower's positions and the hold was forgotten with the features, and the
    replay stopped short of it."""
    follower = EventFollower()
    rebuilder = Rebuilder(follower)
    marker = RedisGenerationMarker(client, f"sw:{topic_prefix}", tmp_path, 3)
    keys = [KeyLayout(f"sw:{topic_prefix}").known(p) for p in range(3)]
    worker = RedisRecovery(marker, cast(Any, rebuilder), cast(Any, Reconciler()), keys)
    await worker.check()
    await worker.follow([0], assigned=True)
    supervisor = Supervisor()  # stops them as the service does (a cancel can be lost in redis-py)
    supervisor.spawn("event-follower", lambda: follower.run(worker))
    supervisor.spawn("redis-rebuild", worker.run)
    try:
        await within(10, rebuilder.rebuilt.wait())
    finally:
        await supervisor.stop()
    stop = rebuilder.stops[0]
    assert stop is not None and stop >= rebuilder.applied > 0
