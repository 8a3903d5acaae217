"""The event loop's lag, watched in every service (shared.http.create_service_app starts it).

All of a service's work shares one loop, so a task that runs long without an await holds up
every other task at each of theirs: the segmenter's eviction of an opt-out is some ten awaits,
and each waited for a stretch of an event batch's work (docs/benchmarks.md, the batch sizes of
2026-12-02). A timer that should fire every LOOP_LAG_INTERVAL_S and fires late measures that
stretch; `segwarden_event_loop_lag_seconds` holds how late.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from shared.metrics import EVENT_LOOP_LAG
from shared.supervise import Sleep

LOOP_LAG_INTERVAL_S = 0.1


async def watch_loop_lag(
    interval_s: float = LOOP_LAG_INTERVAL_S,
    observe: Callable[[float], None] = EVENT_LOOP_LAG.observe,
    sleep: Sleep = asyncio.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Observe, until cancelled, how much later than asked each sleep of `interval_s` returned."""
    while True:
        asked = clock() + interval_s
        await sleep(interval_s)
        observe(max(0.0, clock() - asked))
