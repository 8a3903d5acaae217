"""RedisGenerationMarker: tells whether Redis still holds the data this worker put there.

Redis is a cache that can be lost (FLUSHDB, a restart without persistence, a failover to an
empty replica). A random generation id is written to `<ns>generation` the first time; the
worker keeps the id it last saw in `DATA_DIR/redis-generation` (mode 0600). A missing key, or
one that differs from the file, means the data is not ours any more. `<ns>rebuilt:<partition>`
holds the generation a partition's state was last completely built for, so a worker taking a
partition over knows whether its previous owner finished.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Sequence
from pathlib import Path

import redis.asyncio as aioredis

FILE_NAME = "redis-generation"


class RedisGenerationMarker:
    def __init__(self, client: aioredis.Redis, namespace: str, data_dir: Path, partitions: int) -> None:
        self.client = client
        self.namespace = namespace
        self.path = data_dir / FILE_NAME
        self.partitions = partitions

    @property
    def key(self) -> str:
        return f"{self.namespace}generation"

    def rebuilt_key(self, partition: int) -> str:
        return f"{self.namespace}rebuilt:{partition}"

    async def read(self) -> tuple[str | None, list[str | None]]:
        """The generation in Redis (None when gone) and, per partition, the generation it was built for."""
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.get(self.key)
            pipe.mget([self.rebuilt_key(p) for p in range(self.partitions)])
            current, rebuilt = await pipe.execute()
        return current, list(rebuilt)

    async def current(self) -> str | None:
        value = await self.client.get(self.key)
        return None if value is None else str(value)

    async def claim(self) -> str:
        """Start a new generation unless another worker just did; returns the one in force.

        Every partition's built marker is dropped: nothing in this Redis is complete any more.
        """
        await self.client.set(self.key, uuid.uuid4().hex, nx=True)
        await self.forget_rebuilt(range(self.partitions))
        return str(await self.client.get(self.key))

    async def claim_kept(self) -> str:
        """Start a generation for data that is already complete (written before the marker existed)."""
        await self.client.set(self.key, uuid.uuid4().hex, nx=True)
        generation = str(await self.client.get(self.key))
        await self.mark_all_rebuilt(generation)
        return generation

    async def forget_rebuilt(self, partitions: Sequence[int] | range) -> None:
        keys = [self.rebuilt_key(p) for p in partitions]
        if keys:
            await self.client.delete(*keys)

    async def mark_rebuilt(self, partition: int, generation: str) -> None:
        await self.client.set(self.rebuilt_key(partition), generation)

    async def mark_all_rebuilt(self, generation: str) -> None:
        await self.client.mset({self.rebuilt_key(p): generation for p in range(self.partitions)})

    async def holds_any(self, keys: Sequence[str]) -> bool:
        """Whether any of these keys exists (data written before the marker existed: an upgrade)."""
        return bool(await self.client.exists(*keys)) if keys else False

    def local(self) -> str | None:
        """The generation this worker last saw, from its data directory."""
        try:
            return self.path.read_text().strip() or None
        except FileNotFoundError:
            return None

    def remember(self, generation: str) -> None:
        """Write the file atomically, private to the service's user."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(generation + "\n")
        os.replace(tmp, self.path)
