"""RedisMembershipReader: the read side of live membership for the HTTP API and the monitors."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from typing import Any

import redis.asyncio as aioredis

from services.segmenter.adapters.redis_buckets import BucketedIndex
from services.segmenter.adapters.redis_keys import SEGMENT, KeyLayout


class RedisMembershipReader:
    def __init__(self, client: aioredis.Redis, keys: KeyLayout) -> None:
        self.client = client
        self.keys = keys
        self.index = BucketedIndex(client)

    async def page(self, segment_id: str, cursor: int, limit: int) -> tuple[list[str], int]:
        """One page of a segment's members (whole buckets, about `limit`); cursor 0 means complete.
        As with SSCAN, a member present throughout is listed at least once, and can be twice."""
        members, next_cursor = await self.index.page(self.keys.members(segment_id), cursor, limit)
        return sorted(members), next_cursor

    async def members(self, segment_id: str) -> AsyncIterator[str]:
        async for customer_id in self.index.members(self.keys.members(segment_id)):
            yield customer_id

    async def size(self, segment_id: str) -> int:
        return (await self.index.size([self.keys.members(segment_id)]))[0]

    async def indexed_in(
        self, customer_id: str, segment_ids: Sequence[str], partitions: Sequence[int]
    ) -> list[str]:
        """The indexes naming the customer: `members:<segment>`, `known:<partition>` and, with a last
        activity there, `activity:<partition>`."""
        async with self.client.pipeline(transaction=False) as pipe:
            for segment_id in segment_ids:
                await self.index.scores(self.keys.members(segment_id), [customer_id], pipe)
            for partition in partitions:
                await self.index.scores(self.keys.known(partition), [customer_id], pipe)
            found = [score for (score,) in await pipe.execute()]
        held = [f"members:{s}" for s, score in zip(segment_ids, found, strict=False) if score is not None]
        for partition, score in zip(partitions, found[len(segment_ids) :], strict=True):
            if score is not None:
                active = float(score) > float("-inf")
                held += [f"known:{partition}"] + ([f"activity:{partition}"] if active else [])
        return held

    async def segments_of(self, customer_id: str) -> list[str]:
        fields = await self.client.hkeys(self.keys.state(customer_id))
        return sorted(f[len(SEGMENT) :] for f in fields if f.startswith(SEGMENT))

    async def profiles(self, customer_ids: Sequence[str], attrs: Sequence[str]) -> list[dict[str, Any]]:
        """The named profile attributes of each customer (for k-anonymous breakdowns)."""
        async with self.client.pipeline(transaction=False) as pipe:
            for customer_id in customer_ids:
                pipe.hmget(self.keys.state(customer_id), [f"p:{a}" for a in attrs])
            rows = await pipe.execute()
        return [{a: json.loads(v) for a, v in zip(attrs, row, strict=True) if v is not None} for row in rows]
