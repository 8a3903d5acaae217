"""Pacer: passes over every owned customer let live input go first, and still finish.

The sweep, the compliance scan, the re-evaluation of changed segments and the reconcile of the
announced membership each visit every customer of the owned partitions, in the event loop that
also runs the event batches and the consent (eviction) path. At a million customers they took
a third to a half of the segmenter's CPU while a backlog of events waited (docs/benchmarks.md,
"the memory bench's drain"). So a pass calls `step` before each chunk, and `step` waits while live
input waits (`LiveInput.waiting`: a batch of events in flight or behind, consent changes fetched
and not handled), for as long as either holds:

- the pass has paused less than `ratio` times as long as it has worked: so it never takes more
  than 1 + `ratio` times its own work, whatever the load (a schedule in customers a second missed
  this: on a loaded machine the passes fell behind any such schedule and so never paused);
- a periodic pass is ahead of its schedule, a straight line from its start to all of its
  customers at its interval: so a short sweep spreads over its interval instead of a burst.

A pass therefore lasts at most max((1 + ratio) x its work, its interval + its work); one longer
than its interval counts in `segwarden_segmenter_pass_overruns_total`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from types import TracebackType

from services.segmenter.domain.ports import LiveInput
from services.segmenter.metrics import PASS_OVERRUNS, PASS_PAUSED, PASS_SECONDS

POLL_S = 0.05  # how often a paused pass looks again whether live input still waits
RATIO = 3.0  # SEGMENTER_PASS_PAUSE_RATIO
# The passes, as named in the metrics (the periodic ones as their supervised tasks too).
SWEEP, COMPLIANCE, REEVALUATION, RECONCILE = "sweep", "compliance", "reevaluation", "reconcile"


class Pacer:
    def __init__(
        self,
        inputs: Sequence[LiveInput] = (),
        ratio: float = RATIO,
        intervals: Mapping[str, float] | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        poll_s: float = POLL_S,
    ) -> None:
        self.inputs = inputs
        self.ratio = ratio
        self.intervals = dict(intervals or {})  # the periodic passes' by name
        self.clock = clock
        self.sleep = sleep
        self.poll_s = poll_s

    async def waiting(self) -> bool:
        for live in self.inputs:
            if await live.waiting():
                return True
        return False

    def begin(self, name: str, total: int) -> PacedPass:
        """A pass named `name` (the metrics' label) that is to visit `total` customers."""
        return PacedPass(self, name, total, self.intervals.get(name))


class PacedPass:
    """One pass's pace; a context manager that records its duration (and an overrun) on exit."""

    def __init__(self, pacer: Pacer, name: str, total: int, interval_s: float | None) -> None:
        self.pacer = pacer
        self.name = name
        self.total = max(1, total)
        self.interval_s = interval_s
        self.started = pacer.clock()
        self.visited = 0
        self.paused_s = 0.0

    def __enter__(self) -> PacedPass:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if kind is not None:
            return  # a failed pass is run again whole: its time says nothing of its pace
        took = self.pacer.clock() - self.started
        PASS_SECONDS.labels(self.name).set(took)
        if self.interval_s is not None and took > self.interval_s:
            PASS_OVERRUNS.labels(self.name).inc()

    def room(self, paused_now: float) -> float:
        """Seconds the pass may still pause now, `paused_now` into the current pause."""
        now, paused = self.pacer.clock(), self.paused_s + paused_now
        worked = now - self.started - paused
        room = self.pacer.ratio * worked - paused
        if self.interval_s is not None:
            due_at = self.started + self.interval_s * min(1.0, self.visited / self.total)
            room = max(room, due_at - now)
        return room

    async def step(self, customers: int) -> None:
        """Before a chunk of `customers`: wait while live input waits and the pass has room (never
        before the first chunk, nor after the last: the pass is done then)."""
        pacer = self.pacer
        began = pacer.clock()
        while (room := self.room(pacer.clock() - began)) > 0 and await pacer.waiting():
            await pacer.sleep(min(pacer.poll_s, room))
        paused = pacer.clock() - began
        if paused > 0:
            self.paused_s += paused
            PASS_PAUSED.labels(self.name).inc(paused)
        self.visited += customers
