"""RedisMembershipReader: the read side of live membership for the HTTP API and the monitors."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from typing import Any

import redis.asyncio as aioredis

from services.segmenter.adapters.redis_keys import SEGMENT, KeyLayout


class RedisMembershipReader:
    def __init__(self, client: aioredis.Redis, keys: KeyLayout) -> None:
        self.client = client
        self.keys = keys

    async def page(self, segment_id: str, cursor: int, limit: int) -> tuple[list[str], int]:
        """One SSCAN page of a segment's members; cursor 0 means the scan is complete."""
        next_cursor, members = await self.client.sscan(self.keys.members(segment_id), cursor, count=limit)
        return sorted(members), int(next_cursor)

    async def members(self, segment_id: str) -> AsyncIterator[str]:
        async for customer_id in self.client.sscan_iter(self.keys.members(segment_id), count=500):
            yield customer_id

    async def size(self, segment_id: str) -> int:
        return int(await self.client.scard(self.keys.members(segment_id)))

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
