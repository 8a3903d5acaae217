"""`GroupCommitWriter`: concurrent submissions share a commit; a bad command fails only its caller."""

from __future__ import annotations

import asyncio
import threading

import pytest

from services.consent.writer import GroupCommitWriter


class Ledger:
    """A stand-in store that records each commit's batch (the writer is generic over commands)."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.release = threading.Event()

    def commit_many(self, commands: list[int]) -> list[int]:
        self.release.wait(5)
        if any(c < 0 for c in commands):
            raise ValueError("negative")
        self.batches.append(commands)
        return [c * 10 for c in commands]

    def commit_one(self, command: int) -> int:
        return self.commit_many([command])[0]


async def test_commands_queued_during_a_commit_form_the_next_batch() -> None:
    ledger = Ledger()
    writer = GroupCommitWriter(ledger.commit_many, ledger.commit_one)
    runner = asyncio.create_task(writer.run())
    try:
        first = asyncio.create_task(writer.submit(1))
        await asyncio.sleep(0.05)  # let the first commit start and block
        rest = [asyncio.create_task(writer.submit(n)) for n in range(2, 12)]
        await asyncio.sleep(0.05)
        ledger.release.set()
        assert await first == 10 and await asyncio.gather(*rest) == [n * 10 for n in range(2, 12)]
        assert ledger.batches == [[1], list(range(2, 12))]
    finally:
        runner.cancel()


async def test_a_failing_command_fails_only_its_own_caller() -> None:
    ledger = Ledger()
    ledger.release.set()
    writer = GroupCommitWriter(ledger.commit_many, ledger.commit_one)
    runner = asyncio.create_task(writer.run())
    try:
        results = await asyncio.gather(*(writer.submit(n) for n in (1, -1, 2)), return_exceptions=True)
        assert results[0] == 10 and results[2] == 20
        assert isinstance(results[1], ValueError)
        with pytest.raises(ValueError):
            await writer.submit(-5)
    finally:
        runner.cancel()
