"""Supervision: every long-running task and retried step is logged, counted, backed off and on /readyz.

A service's composition root owns one `Supervisor`. `spawn` runs a task (a consumer, relay,
sweep, feed, watcher, checkpointer) and restarts it with exponential backoff when it raises;
`retry` repeats one step (a start-up step, one record) while its error is transient. Both
show up in `reasons()`, which the service adds to its readiness checks, so a task that keeps
failing turns `/readyz` 503 with its name and reason. `handle_or_dead_letter` is the per-record
form: a record whose handler fails for good goes to its dead-letter topic and the stream goes on.

Logged reasons name the exception type and where it was raised, never its message: a message
may hold a customer id or a record value (STYLE.md 9). Metric labels are the task and step
names, constants in the code (a segment's job adds the segment id, an operator's name).
"""

from __future__ import annotations

import asyncio
import logging
import time
import traceback
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from aiokafka.errors import KafkaError as AIOKafkaError
from aiokafka.structs import ConsumerRecord
from kafka.errors import KafkaError
from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError

from shared.deadletter import DeadLetters, send_dead_letter
from shared.metrics import STEP_RETRIES, TASK_FAILURES, TASK_RUNNING

log = logging.getLogger(__name__)
T = TypeVar("T")
RECANCEL_S = 1.0  # a stopping task still running after this long is cancelled again
Sleep = Callable[[float], Awaitable[None]]

# A dependency that is away or a connection that dropped: worth waiting for, never a reason to
# skip an input. (TimeoutError and the failpoints' InjectedFaultError are OSErrors.)
TRANSIENT: tuple[type[BaseException], ...] = (RedisError, AIOKafkaError, KafkaError, OSError, SQLAlchemyError)


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with a cap: `initial`, `initial * factor`, ... up to `cap` seconds."""

    initial: float = 0.2
    cap: float = 5.0
    factor: float = 2.0

    def delay(self, failures: int) -> float:
        """The wait after the `failures`-th failure in a row (1-based)."""
        return float(min(self.cap, self.initial * self.factor ** max(0, failures - 1)))


DEFAULT_BACKOFF = Backoff()


def describe_failure(exc: BaseException) -> str:
    """`Type at file:line in function`, the innermost frame: a reason that holds no data."""
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return type(exc).__name__
    frame = frames[-1]
    return f"{type(exc).__name__} at {Path(frame.filename).name}:{frame.lineno} in {frame.name}"


def failure_stack(exc: BaseException) -> list[str]:
    """Where it failed, outermost first, as `file:line in function` (no message, no locals)."""
    return [
        f"{Path(f.filename).name}:{f.lineno} in {f.name}" for f in traceback.extract_tb(exc.__traceback__)
    ]


@dataclass
class _Health:
    running: bool = False
    failures: int = 0  # in a row; reset once an attempt has lasted `stable_after`
    reason: str = ""
    started: float = 0.0
    failed: float = 0.0
    periodic: bool = False  # recovered only by a successful run, not by time
    stopped: bool = False  # failed and not restarted


class Supervisor:
    """Owns a service's background tasks and knows which of them are failing."""

    def __init__(
        self,
        backoff: Backoff = DEFAULT_BACKOFF,
        stable_after: float = 5.0,
        sleep: Sleep = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.backoff, self.stable_after = backoff, stable_after
        self._sleep, self._clock = sleep, clock
        self._health: dict[str, _Health] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def spawn(
        self, name: str, work: Callable[[], Awaitable[object]], restart: bool = True
    ) -> asyncio.Task[None]:
        """Run `work()` in a task, calling it again after each crash; done when it returns.

        `restart=False` is for work that cannot simply start over (a start-up sequence): its
        crash is logged and counted, and it stays on /readyz until the process is restarted.
        """
        if name in self._tasks and not self._tasks[name].done():
            raise ValueError(f"a task named {name!r} is already running")
        task = asyncio.create_task(self.supervise(name, work, restart), name=name)
        self._tasks[name] = task
        return task

    def every(
        self, name: str, interval: float, job: Callable[[], Awaitable[object]], first_now: bool = False
    ) -> asyncio.Task[None]:
        """Run `job()` every `interval` seconds (first at once when `first_now`), supervised.

        A failed run counts until a later run succeeds, however long the pause between runs.
        """
        health = self._health.setdefault(name, _Health())
        health.periodic = True

        async def periodically() -> None:
            if not first_now:
                await self._sleep(interval)
            while True:
                await job()
                health.failures, health.reason = 0, ""
                await self._sleep(interval)

        return self.spawn(name, periodically)

    async def supervise(self, name: str, work: Callable[[], Awaitable[object]], restart: bool = True) -> None:
        """`work()` until it returns; a crash is logged, counted and retried after a backoff."""
        health = self._health.setdefault(name, _Health())
        TASK_FAILURES.labels(name)  # exposed at 0 from the start, so `increase` sees the first crash
        try:
            while True:
                self._started(name, health)
                try:
                    await work()
                    health.failures, health.reason = 0, ""
                    return
                except Exception as exc:
                    delay = self._failed(name, health, exc)
                    TASK_FAILURES.labels(name).inc()
                    health.stopped = not restart
                    log.error(
                        "background task failed; restarting" if restart else "background task failed",
                        extra={
                            "task": name,
                            "reason": health.reason,
                            "failures": health.failures,
                            "retry_in_s": delay,
                            "stack": failure_stack(exc),
                        },
                    )
                    if not restart:
                        return
                    await self._sleep(delay)
        finally:
            health.running = False
            TASK_RUNNING.labels(name).set(0)

    async def retry(
        self,
        step: str,
        call: Callable[[], Awaitable[T]],
        transient: tuple[type[BaseException], ...] = TRANSIENT,
    ) -> T:
        """`call()` until it succeeds, waiting out transient errors; shown in `reasons()` meanwhile."""
        health = self._health.setdefault(step, _Health())
        result = await retry(step, call, transient, self.backoff, self._sleep, self._on_retry(step, health))
        health.failures, health.reason = 0, ""
        return result

    def reasons(self) -> dict[str, str]:
        """Name -> why, for each task or step that failed and has not run stably since."""
        now = self._clock()
        return {
            name: self._reason(h, now)
            for name, h in sorted(self._health.items())
            if h.failures and not self._stable(h, now)
        }

    def not_ready(self) -> str | None:
        """One line for /readyz naming every failing task, or None when none is failing."""
        reasons = self.reasons()
        return "; ".join(f"{name}: {why}" for name, why in reasons.items()) or None

    async def check(self) -> str | None:
        """`not_ready` in the shape `shared.http.Readiness.add` takes."""
        return self.not_ready()

    async def cancel(self, name: str) -> None:
        """Stop the task `name` if it runs and wait until it has ended; its failures are forgotten,
        since the work it was doing no longer needs doing (a job superseded by a newer one)."""
        task = self._tasks.pop(name, None)
        if task is not None:
            await cancel_until_done([task])
        self._health.pop(name, None)

    async def stop(self) -> None:
        """Cancel every task and wait until each has ended."""
        await cancel_until_done(list(self._tasks.values()))
        self._tasks.clear()

    def _stable(self, health: _Health, now: float) -> bool:
        """The current attempt has run long enough to call the last failure past."""
        return not health.periodic and health.running and now - health.started >= self.stable_after

    def _reason(self, health: _Health, now: float) -> str:
        state = "stopped" if health.stopped else "restarted" if health.running else "backing off"
        return f"failed {health.failures} time(s) in a row, {state}; last: {health.reason}"

    def _started(self, name: str, health: _Health) -> None:
        health.running, health.started = True, self._clock()
        TASK_RUNNING.labels(name).set(1)

    def _failed(self, name: str, health: _Health, exc: BaseException) -> float:
        now = self._clock()
        if self._stable(health, now):
            health.failures = 0  # it ran fine for a while: a new failure starts the backoff over
        health.failures += 1
        health.running, health.failed, health.reason = False, now, describe_failure(exc)
        TASK_RUNNING.labels(name).set(0)
        return self.backoff.delay(health.failures)

    def _on_retry(self, step: str, health: _Health) -> Callable[[int, BaseException], None]:
        def note(failures: int, exc: BaseException) -> None:
            health.failures, health.failed, health.reason = failures, self._clock(), describe_failure(exc)

        return note


async def retry(
    step: str,
    call: Callable[[], Awaitable[T]],
    transient: tuple[type[BaseException], ...] = TRANSIENT,
    backoff: Backoff = DEFAULT_BACKOFF,
    sleep: Sleep = asyncio.sleep,
    on_failure: Callable[[int, BaseException], None] | None = None,
) -> T:
    """`call()` until it succeeds; a transient error is logged, counted and retried with backoff.

    Any other exception is raised at once: it will not go away by waiting.
    """
    failures = 0
    while True:
        try:
            return await call()
        except transient as exc:
            failures += 1
            delay = backoff.delay(failures)
            STEP_RETRIES.labels(step).inc()
            if on_failure is not None:
                on_failure(failures, exc)
            log.warning(
                "step failed; retrying",
                extra={
                    "step": step,
                    "reason": describe_failure(exc),
                    "failures": failures,
                    "retry_in_s": delay,
                },
            )
            await sleep(delay)


def for_each(
    handle: Callable[[ConsumerRecord], Awaitable[object]],
) -> Callable[[list[ConsumerRecord]], Awaitable[None]]:
    """A one-record handler as the batch handler `handle_or_dead_letter` takes."""

    async def handle_each(records: list[ConsumerRecord]) -> None:
        for record in records:
            await handle(record)

    return handle_each


async def cancel_until_done(tasks: Sequence[asyncio.Task[None]]) -> None:
    """Cancel `tasks`, and again every RECANCEL_S those still running: a cancel can be lost on the
    way, and a task that dropped one must still end. redis-py (8.x) sends every command through
    `asyncio.wait_for` (its `socket_timeout`, 5 s by default), whose Python 3.11 flaw `within`
    describes: a task cancelled as a command's send completes runs on as if it had not been (seen
    in the segmenter's consent follower; a loop of SETs, cancelled, reproduces it in a few tries)."""
    pending = set(tasks)
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=RECANCEL_S)
    await asyncio.gather(*tasks, return_exceptions=True)  # retrieve what each ended with


async def uninterrupted(awaitable: Awaitable[T]) -> T:
    """`awaitable` run to its end even when the caller is cancelled meanwhile (each cancel, and
    `cancel_until_done`'s repeats, only wait for it); the cancel is raised once it is done. For
    a step whose first half must not be cut from its second: a stop that cancels a publish after
    the broker took the records, before the outbox was cleared, has the next owner send them
    again (the segmenter's clean scale-in announced a `left` twice)."""
    task = asyncio.ensure_future(awaitable)
    cancelled = False
    while not task.done():
        try:
            await asyncio.wait([task])
        except asyncio.CancelledError:
            cancelled = True
    if cancelled:
        raise asyncio.CancelledError from (None if task.cancelled() else task.exception())
    return task.result()


async def within(seconds: float | None, awaitable: Awaitable[T]) -> T:
    """`awaitable`, or TimeoutError after `seconds` (None: no limit): asyncio.wait_for without
    its Python 3.11 flaw (gh-86296, fixed in 3.12): a cancel that arrives while the awaitable
    completes is swallowed, so a supervised loop cancelled at shutdown runs on and the stop never
    ends. It hung the segmenter's SIGTERM (its consent follower, cancelled in the barrier's wait,
    kept reading) in 2 of 3 tries. Use this (or asyncio.timeout), never wait_for."""
    async with asyncio.timeout(seconds):
        return await awaitable


async def handle_or_dead_letter(
    dead_letters: DeadLetters,
    step: str,
    records: Sequence[ConsumerRecord],
    handle: Callable[[list[ConsumerRecord]], Awaitable[object]],
    transient: tuple[type[BaseException], ...] = TRANSIENT,
    backoff: Backoff = DEFAULT_BACKOFF,
) -> None:
    """Handle `records` together, waiting out transient errors (an input is never skipped for them).

    When the handler fails otherwise, each record is handled alone, and one that still fails goes
    to its dead-letter topic with the reason, instead of stopping the stream for ever.
    """
    batch = list(records)
    try:
        await retry(step, lambda: handle(batch), transient, backoff)
        return
    except Exception as exc:
        if len(batch) == 1:
            await send_dead_letter(dead_letters, batch[0], f"could not be processed: {describe_failure(exc)}")
            return
        log.error(
            "a batch failed; handling its records one by one",
            extra={"step": step, "reason": describe_failure(exc), "records": len(batch)},
        )
    for record in batch:
        await handle_or_dead_letter(dead_letters, step, [record], handle, transient, backoff)
