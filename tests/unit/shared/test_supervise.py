"""The supervision helper: backoff, failure counting, readiness reasons, dead letters for what never works."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from aiokafka.structs import ConsumerRecord
from redis.exceptions import ConnectionError as RedisConnectionError
from sqlalchemy.exc import OperationalError

from shared.deadletter import DeadLetters
from shared.pseudonym import pseudonymize
from shared.supervise import (
    TASK_FAILURES,
    TASK_RUNNING,
    Backoff,
    Supervisor,
    describe_failure,
    handle_or_dead_letter,
    retry,
    within,
)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


class Producer:
    """Records dead letters as `send_dead_letter` sends them."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []
        self.keys: list[bytes | None] = []

    async def send_and_wait(self, topic: str, value: bytes, key: bytes | None = None) -> None:
        self.sent.append((topic, json.loads(value)))
        self.keys.append(key)


KEY = b"k" * 32


def sink(producer: Producer) -> DeadLetters:
    return DeadLetters(producer, KEY)


def record(offset: int, value: bytes = b'{"customer_id": "c-secret"}') -> ConsumerRecord:
    return ConsumerRecord("t.in", 0, offset, 0, 0, b"c-secret", value, None, 0, len(value), ())


def test_backoff_doubles_up_to_the_cap() -> None:
    backoff = Backoff(initial=0.2, cap=5.0)
    assert [backoff.delay(n) for n in range(1, 8)] == [0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0]


def test_a_reason_names_type_and_place_never_the_message() -> None:
    try:
        raise KeyError("customer c-secret")
    except KeyError as exc:
        reason = describe_failure(exc)
    assert reason.startswith("KeyError at test_supervise.py:")
    assert "c-secret" not in reason


async def test_a_crashing_task_is_counted_backed_off_restarted_and_shown_until_stable() -> None:
    clock = Clock()
    supervisor = Supervisor(Backoff(initial=1.0, cap=4.0), stable_after=10.0, sleep=clock.sleep, clock=clock)
    attempts = 0
    release = asyncio.Event()
    before = TASK_FAILURES.labels("flaky")._value.get()

    async def flaky() -> None:
        nonlocal attempts
        attempts += 1
        if attempts <= 4:
            raise RedisConnectionError("customer c-secret")
        await release.wait()

    task = supervisor.spawn("flaky", flaky)
    while attempts < 5:
        await asyncio.sleep(0)
    assert clock.slept == [1.0, 2.0, 4.0, 4.0]
    assert TASK_FAILURES.labels("flaky")._value.get() - before == 4
    assert TASK_RUNNING.labels("flaky")._value.get() == 1
    reason = supervisor.reasons()["flaky"]
    assert "failed 4 time(s) in a row" in reason and "ConnectionError at" in reason
    assert "c-secret" not in (supervisor.not_ready() or "")

    clock.now += 10.0  # it has run stably since the last restart
    assert supervisor.reasons() == {}
    assert await supervisor.check() is None
    release.set()
    await task
    assert TASK_RUNNING.labels("flaky")._value.get() == 0


async def test_a_task_that_keeps_failing_stays_not_ready() -> None:
    clock = Clock()
    supervisor = Supervisor(Backoff(initial=1.0, cap=1.0), stable_after=5.0, sleep=clock.sleep, clock=clock)

    async def broken() -> None:
        raise ValueError("never works")

    supervisor.spawn("broken", broken)
    for _ in range(50):
        await asyncio.sleep(0)
    assert "broken: failed" in (supervisor.not_ready() or "")
    await supervisor.stop()
    assert TASK_RUNNING.labels("broken")._value.get() == 0


async def test_a_cancelled_task_ends_and_its_failures_are_forgotten() -> None:
    clock = Clock()
    supervisor = Supervisor(Backoff(initial=1.0, cap=1.0), stable_after=5.0, sleep=clock.sleep, clock=clock)

    async def broken() -> None:
        raise ValueError("never works")

    task = supervisor.spawn("superseded", broken)
    for _ in range(50):
        await asyncio.sleep(0)
    assert "superseded: failed" in (supervisor.not_ready() or "")
    await supervisor.cancel("superseded")
    assert task.done() and supervisor.not_ready() is None
    supervisor.spawn("superseded", broken)  # the name is free for the job that replaces it
    await supervisor.stop()


async def test_a_stop_ends_a_loop_cancelled_just_as_its_timed_wait_completes() -> None:
    """The fault: the stop's cancel lands in the same turn of the loop as the wake-up the task
    waited for. asyncio.wait_for on Python 3.11 returns the result and drops the cancel (the loop
    ran on and the segmenter never stopped on SIGTERM); `within` lets it through."""
    wake = asyncio.Event()
    turns = 0
    supervisor = Supervisor(Backoff(initial=1.0, cap=1.0))

    async def loop() -> None:
        nonlocal turns
        while True:
            turns += 1
            await within(10.0, wake.wait())
            wake.clear()

    task = supervisor.spawn("follower", loop)
    for _ in range(5):
        await asyncio.sleep(0)
    assert turns == 1
    wake.set()  # the wait completes ...
    task.cancel()  # ... and the stop's cancel comes in the same turn (Supervisor.stop's first step)
    done, _ = await asyncio.wait([task], timeout=5.0)
    await supervisor.stop()
    assert done and task.cancelled() and turns == 1


async def test_a_stop_ends_a_task_that_dropped_its_cancel() -> None:
    """A library may drop the cancel as above (asyncio.wait_for on 3.11); the stop cancels what
    still runs again, so the task ends at its next wait."""
    wake = asyncio.Event()
    turns = 0
    supervisor = Supervisor(Backoff(initial=1.0, cap=1.0))

    async def loop() -> None:
        nonlocal turns
        while True:
            turns += 1
            try:
                await wake.wait()
            except asyncio.CancelledError:
                if turns > 1:
                    raise
            wake.clear()  # the first cancel dropped, as wait_for does when the wait completed

    task = supervisor.spawn("follower", loop)
    for _ in range(5):
        await asyncio.sleep(0)
    stopping = asyncio.ensure_future(supervisor.stop())
    done, _ = await asyncio.wait([stopping], timeout=30.0)
    assert done and task.cancelled() and turns == 2


async def test_within_times_out_and_returns_what_completes_in_time() -> None:
    assert await within(1.0, asyncio.sleep(0, "done")) == "done"
    with pytest.raises(TimeoutError):
        await within(0.01, asyncio.Event().wait())


async def test_a_failure_after_a_stable_run_starts_the_backoff_over() -> None:
    clock = Clock()
    supervisor = Supervisor(Backoff(initial=1.0, cap=8.0), stable_after=5.0, sleep=clock.sleep, clock=clock)
    attempts = 0

    async def sometimes() -> None:
        nonlocal attempts
        attempts += 1
        if attempts == 3:
            clock.now += 60.0  # ran a minute before failing
        if attempts <= 4:
            raise OSError("dropped")

    await supervisor.supervise("sometimes", sometimes)
    assert clock.slept == [1.0, 2.0, 1.0, 2.0]
    assert supervisor.reasons() == {}  # it returned: nothing is failing any more


async def test_retry_waits_out_transient_errors_and_raises_the_others() -> None:
    clock = Clock()
    calls = 0

    async def step() -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise OperationalError("SELECT", {}, Exception("down"))
        return "done"

    assert await retry("store", step, sleep=clock.sleep) == "done"
    assert clock.slept == [0.2, 0.4]

    async def bug() -> None:
        raise TypeError("a bug")

    with pytest.raises(TypeError):
        await retry("bug", bug, sleep=clock.sleep)


async def test_a_step_that_keeps_failing_is_shown_until_it_succeeds() -> None:
    clock = Clock()
    supervisor = Supervisor(sleep=clock.sleep, clock=clock)
    seen: list[str | None] = []

    async def topics() -> None:
        seen.append(supervisor.not_ready())
        if len(seen) < 3:
            raise OSError("broker away")

    await supervisor.retry("topics", topics)
    assert seen[0] is None and "topics: failed 2 time(s)" in (seen[2] or "")
    assert supervisor.not_ready() is None


async def test_a_record_that_can_never_be_processed_goes_to_its_dead_letter_topic() -> None:
    producer = Producer()
    handled: list[int] = []

    async def handle(records: list[ConsumerRecord]) -> None:
        if any(r.offset == 2 for r in records):
            raise ValueError("bad customer c-secret")
        handled.extend(r.offset for r in records)

    await handle_or_dead_letter(sink(producer), "t.in", [record(1), record(2), record(3)], handle)
    assert handled == [1, 3]
    [(topic, letter)] = producer.sent
    assert topic == "t.in.dlq" and letter["offset"] == 2
    assert letter["error"].startswith("could not be processed: ValueError at")
    assert "c-secret" not in letter["error"]
    # The key is the customer's pseudonym, never the raw id.
    assert producer.keys == [pseudonymize(KEY, "c-secret").encode()]
    assert letter["key_pseudonym"] == pseudonymize(KEY, "c-secret")


async def test_a_transient_failure_is_retried_not_dead_lettered() -> None:
    producer = Producer()
    calls = 0

    async def handle(records: list[ConsumerRecord]) -> None:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise RedisConnectionError("away")

    await handle_or_dead_letter(sink(producer), "t.in", [record(1)], handle, backoff=Backoff(0.001, 0.001))
    assert calls == 3 and producer.sent == []


async def test_a_periodic_job_that_fails_every_run_stays_not_ready_until_a_run_succeeds() -> None:
    clock = Clock()
    supervisor = Supervisor(Backoff(initial=1.0, cap=1.0), stable_after=5.0, sleep=clock.sleep, clock=clock)
    runs: list[float] = []
    healthy = asyncio.Event()
    seen: list[str | None] = []

    async def sweep() -> None:
        runs.append(clock.now)
        seen.append(supervisor.not_ready())
        if len(runs) == 4:
            healthy.set()
        if len(runs) < 4:
            raise RedisConnectionError("away")

    supervisor.every("sweep", 60.0, sweep)
    await healthy.wait()
    # Each restart waits the interval again: a failing job never runs more often than planned.
    assert [b - a for a, b in zip(runs, runs[1:], strict=False)] == [61.0, 61.0, 61.0]
    assert seen[0] is None and all("sweep: failed" in (s or "") for s in seen[1:])
    await asyncio.sleep(0)
    assert supervisor.not_ready() is None
    await supervisor.stop()


async def test_within_none_waits_without_a_limit() -> None:
    wake = asyncio.Event()
    waiting = asyncio.ensure_future(within(None, wake.wait()))
    for _ in range(5):
        await asyncio.sleep(0)
    assert not waiting.done()
    wake.set()
    assert await waiting is True


def test_no_service_uses_asyncio_wait_for() -> None:
    # The flaw `within` avoids would hang the stop of whichever loop used wait_for.
    root = Path(__file__).resolve().parents[3]
    users = [
        str(path.relative_to(root))
        for folder in ("services", "shared")
        for path in (root / folder).rglob("*.py")
        if "asyncio.wait_for(" in path.read_text()
    ]
    assert users == []
