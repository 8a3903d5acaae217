"""BucketedIndex: a large set of members with scores kept as many small sorted sets (listpacks).

One sorted set past 128 members is a skiplist, about 115 bytes a member here, where a listpack
holds one in about 20. So each index (a partition's known customers with their last activity, a
segment's members) is split by linear hashing into buckets of about 32 members (adapters/lua.py
BUCKETS: the scripts that write them, the hash and the splits). Readers go up the buckets and
then on to any added meanwhile, so a member present throughout a read is seen at least once (a
member moved by a split can be seen twice, as SSCAN may return one twice).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any

import orjson
import redis.asyncio as aioredis

from services.segmenter.adapters import lua
from services.segmenter.adapters.redis_keys import calls_by_slot

# Buckets read per round trip when going through a whole index.
BUCKETS_PER_READ = 64
# Indexes changed per Lua call (lua.INDEX_UPDATE): an opt-out from 1,000 segments is five calls.
HEADS_PER_CALL = 200

# One index's change for lua.INDEX_UPDATE: its head, then "GT"/"XX" and member, score pairs, or
# "REM" and members.
IndexChange = tuple[str, list[str]]

# Queues one read of a bucket (its key) on a pipeline.
BucketRead = Callable[[Any, str], Any]


def whole(pipe: Any, key: str) -> Any:
    return pipe.zrange(key, 0, -1)


def bucket_key(head: str, bucket: int) -> str:
    return f"{head}:{bucket}"


def bucket_count(fields: Sequence[str | None]) -> int:
    """The number of buckets from a head's `level` and `split` (none for a missing head)."""
    level, split = (int(v or 0) for v in fields)
    return 2**level + split if fields[0] is not None else 0


def adding(head: str, scores: Mapping[str, float | int | str], only_held: bool = False) -> IndexChange:
    """Add the members with their scores (or raise them); with `only_held`, set only those there."""
    change = ["XX" if only_held else "GT"]
    for member, score in scores.items():
        change += [member, repr(score) if isinstance(score, float) else str(score)]
    return head, change


def removing(head: str, members: Sequence[str]) -> IndexChange:
    return head, ["REM", *members]


class BucketedIndex:
    def __init__(self, client: aioredis.Redis) -> None:
        self.client = client
        # A call's heads share a hash slot on a cluster (redis_keys.calls_by_slot).
        self.by_slot = isinstance(client, aioredis.RedisCluster)
        self._update = client.register_script(lua.INDEX_UPDATE)
        self._scores = client.register_script(lua.INDEX_SCORES)

    async def add(
        self, head: str, scores: Mapping[str, float | int | str], pipe: Any = None, only_held: bool = False
    ) -> None:
        """Add the members (or raise their scores: a lower one leaves it); with `only_held`, set
        the score of those already there and add no one."""
        await self.update([adding(head, scores, only_held)], pipe)

    async def remove(self, head: str, members: Sequence[str], pipe: Any = None) -> None:
        await self.update([removing(head, members)], pipe)

    async def update(self, changes: Sequence[IndexChange], pipe: Any = None) -> None:
        """Change many indexes, in Lua calls of many heads (one hash slot each on a cluster)."""
        heads = [head for head, _ in changes]
        for call in calls_by_slot(heads, self.by_slot, HEADS_PER_CALL, key=str):
            args = orjson.dumps([changes[i][1] for i in call])
            await self._update(keys=[heads[i] for i in call], args=[args], client=pipe or self.client)

    async def scores(self, head: str, members: Sequence[str], pipe: Any = None) -> Any:
        """Each member's score (None when absent); in a pipeline, its answer is that list."""
        return await self._scores(keys=[head], args=list(members), client=pipe or self.client)

    async def size(self, heads: Sequence[str]) -> list[int]:
        async with self.client.pipeline(transaction=False) as pipe:
            for head in heads:
                pipe.hget(head, "count")
            return [int(n or 0) for n in await pipe.execute()]

    async def buckets(self, head: str) -> int:
        return bucket_count(await self.client.hmget(head, ["level", "split"]))

    async def read(self, head: str, start: int, count: int, query: BucketRead) -> tuple[list[Any], int]:
        """`query` on buckets `start` to `start + count`: each bucket's answer, and the bucket count
        now (read after them, so buckets a split added meanwhile are known)."""
        async with self.client.pipeline(transaction=False) as pipe:
            for bucket in range(start, start + count):
                query(pipe, bucket_key(head, bucket))
            pipe.hmget(head, ["level", "split"])
            *answers, fields = await pipe.execute()
        return answers, bucket_count(fields)

    async def each_bucket(self, head: str, query: BucketRead) -> AsyncIterator[list[Any]]:
        """`query`'s answer for every bucket, going up and on to those added while reading."""
        start, total = 0, await self.buckets(head)
        while start < total:
            count = min(BUCKETS_PER_READ, total - start)
            answers, total = await self.read(head, start, count, query)
            start += count
            for answer in answers:
                yield answer

    async def members(self, head: str) -> AsyncIterator[str]:
        async for answer in self.each_bucket(head, whole):
            for member in answer:
                yield member

    async def page(self, head: str, cursor: int, limit: int) -> tuple[list[str], int]:
        """Whole buckets from bucket `cursor` until at least `limit` members (or the end): the
        members and the bucket to go on from, 0 once every bucket was read."""
        found: list[str] = []
        start, total = cursor, await self.buckets(head)
        while start < total and len(found) < limit:
            count = min(BUCKETS_PER_READ, total - start, 1 + (limit - len(found)) // lua.BUCKET_FILL)
            answers, total = await self.read(head, start, count, whole)
            start += count
            for answer in answers:
                found += answer
        return found, start if start < total else 0
