"""Per-key asyncio locks: one customer's read-commit-publish sequences never interleave in a process."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager


class KeyedLocks:
    def __init__(self) -> None:
        self._locks: dict[str, asyncio.Lock] = {}
        self._users: dict[str, int] = {}

    @asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        async with self.hold_all((key,)):
            yield

    @asynccontextmanager
    async def hold_all(self, keys: Iterable[str]) -> AsyncIterator[None]:
        """Every key's lock, taken in sorted order (so two holders never deadlock): one context for
        a batch's customers instead of one per customer."""
        ordered = sorted(set(keys))
        locks = []
        for key in ordered:
            locks.append(self._locks.setdefault(key, asyncio.Lock()))
            self._users[key] = self._users.get(key, 0) + 1
        held = 0
        try:
            for lock in locks:
                await lock.acquire()
                held += 1
            yield
        finally:
            for lock in locks[:held]:
                lock.release()
            for key in ordered:
                self._users[key] -= 1
                if not self._users[key]:
                    # Nobody waits on it any more: drop it so the map does not grow with every customer.
                    del self._users[key], self._locks[key]
