"""`GroupCommitWriter`: concurrent consent choices share one transaction, so one fsync serves many."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Generic, TypeVar

log = logging.getLogger(__name__)
C = TypeVar("C")
R = TypeVar("R")


class GroupCommitWriter(Generic[C, R]):
    """Queues commands; one task commits everything queued so far in one call, in arrival order.

    While a batch commits, new commands queue up and form the next batch: under load the batches
    grow, and throughput is no longer bounded by one commit (one fsync) per request. A failed batch
    is retried one command at a time, so only the command at fault fails its caller.
    """

    def __init__(
        self, commit_many: Callable[[list[C]], list[R]], commit_one: Callable[[C], R], max_batch: int = 256
    ) -> None:
        self.commit_many = commit_many
        self.commit_one = commit_one
        self.max_batch = max_batch
        self._queue: asyncio.Queue[tuple[C, asyncio.Future[R]]] = asyncio.Queue()

    async def submit(self, command: C) -> R:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        await self._queue.put((command, future))
        return await future

    async def run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self.max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            await self._commit([item for item in batch if not item[1].cancelled()])

    async def _commit(self, batch: list[tuple[C, asyncio.Future[R]]]) -> None:
        if not batch:
            return
        try:
            results = await asyncio.to_thread(self.commit_many, [command for command, _ in batch])
        except Exception as exc:
            if len(batch) == 1:
                _fail(batch[0][1], exc)
                return
            log.warning("a group commit failed; committing its commands one by one", exc_info=True)
            for command, future in batch:
                await self._commit_alone(command, future)
            return
        for (_, future), result in zip(batch, results, strict=True):
            if not future.done():
                future.set_result(result)

    async def _commit_alone(self, command: C, future: asyncio.Future[R]) -> None:
        try:
            result = await asyncio.to_thread(self.commit_one, command)
        except Exception as exc:  # the caller of submit() gets it, as if it had committed alone
            _fail(future, exc)
            return
        if not future.done():
            future.set_result(result)


def _fail(future: asyncio.Future[R], exc: Exception) -> None:
    if not future.done():
        future.set_exception(exc)
