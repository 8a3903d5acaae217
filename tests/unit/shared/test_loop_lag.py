"""The loop-lag watcher measures how long a task ran without an await (shared/loop_lag.py)."""

from __future__ import annotations

import asyncio
import time

from shared.loop_lag import watch_loop_lag

BLOCK_S = 0.2


async def test_a_stretch_without_an_await_is_observed_as_lag() -> None:
    observed: list[float] = []
    watcher = asyncio.create_task(watch_loop_lag(0.01, observed.append))
    while not observed:  # the watcher's first round, on an idle loop
        await asyncio.sleep(0.005)
    seen = len(observed)
    time.sleep(BLOCK_S)  # a task's stretch of work: the loop runs nothing else meanwhile
    while len(observed) == seen:
        await asyncio.sleep(0.005)
    watcher.cancel()
    # The timer due 0.01 s into the stretch fired at its end, at least BLOCK_S - 0.01 late.
    assert observed[seen] >= BLOCK_S - 0.01
    assert all(lag >= 0 for lag in observed)


async def test_a_sleep_that_returns_on_time_is_no_lag() -> None:
    now = [0.0]
    observed: list[float] = []

    async def sleep(seconds: float) -> None:
        now[0] += seconds
        if len(observed) == 3:
            raise asyncio.CancelledError

    try:
        await watch_loop_lag(0.1, observed.append, sleep, lambda: now[0])
    except asyncio.CancelledError:
        pass
    assert observed == [0.0, 0.0, 0.0]
