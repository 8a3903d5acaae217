"""A stop lets the webhooks in flight end and record their answer, for at most the lease, and
then cancels what is left and waits until it has ended."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from services.delivery.handlers import Dispatcher, RetryPolicy
from tests.unit.delivery.test_routing import destination

ITEM = {
    "seq": 1,
    "destination_id": "mailer",
    "attempts": 0,
    "idempotency_key": "key-1",
    "segment_id": "vip",
    "action": "joined",
    "reason": "rule_matched",
    "subject": "subject-1",
    "at": "2026-12-03T00:00:00Z",
    "changed_at": None,
}


class OneDue:
    """An outbox with one webhook due; `settle` can be held, as a store that hangs would."""

    def __init__(self) -> None:
        self.claimed = False
        self.settled: list[str] = []
        self.settling = threading.Event()
        self.release = threading.Event()
        self.release.set()

    def next_due(self) -> float | None:
        return None

    def claim_due(self, now: float, limit: int, lease_until: float) -> list[dict[str, Any]]:
        if self.claimed:
            return []
        self.claimed = True
        return [dict(ITEM)]

    def get_destination(self, destination_id: str) -> Any:
        return destination(destination_id)

    def settle(self, seq: int, status: str, attempts: int, error: str | None, now: float) -> None:
        self.settling.set()
        self.release.wait()
        self.settled.append(status)


class HeldSender:
    """A receiver that answers 2xx once `answer` is set."""

    def __init__(self) -> None:
        self.posted, self.answer = asyncio.Event(), asyncio.Event()

    async def post(self, url: str, payload: bytes, headers: dict[str, str]) -> str | None:
        self.posted.set()
        await self.answer.wait()
        return None


def dispatcher(outbox: OneDue, sender: HeldSender, lease_s: float) -> Dispatcher:
    policy = RetryPolicy(3, 0.1, 1.0, lease_s, breaker_failures=5, breaker_cooldown_s=1.0)
    return Dispatcher(outbox, sender, policy, concurrency=4, settled=lambda: None)  # type: ignore[arg-type]


async def test_a_stop_waits_for_the_answer_in_flight_and_records_it() -> None:
    outbox, sender = OneDue(), HeldSender()
    run = asyncio.create_task(dispatcher(outbox, sender, lease_s=30).run())
    await asyncio.wait_for(sender.posted.wait(), 5)
    run.cancel()
    await asyncio.sleep(0.1)
    assert not run.done()  # still waiting for the receiver
    sender.answer.set()
    await asyncio.wait({run}, timeout=5)
    assert run.cancelled() and outbox.settled == ["delivered"]


async def test_a_store_that_hangs_holds_the_stop_for_the_lease_then_is_cancelled() -> None:
    outbox, sender = OneDue(), HeldSender()
    sender.answer.set()
    outbox.release.clear()  # the receiver answers; marking it delivered never returns
    run = asyncio.create_task(dispatcher(outbox, sender, lease_s=0.5).run())
    await asyncio.to_thread(outbox.settling.wait, 5)
    run.cancel()
    await asyncio.wait({run}, timeout=5)  # the lease, then the cancel of what was left
    ended, settled = run.done(), list(outbox.settled)
    outbox.release.set()  # let the store's thread end (a thread cannot be cancelled)
    assert ended and run.cancelled() and settled == []
