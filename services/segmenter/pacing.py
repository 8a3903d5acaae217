"""Pacer: passes over every owned customer let live input go first, never below a minimum pace.

The sweep, the compliance scan, the re-evaluation of changed segments and the reconcile of the
announced membership each visit every customer of the owned partitions, in the event loop that
also runs the event batches and the consent (eviction) path. At a million customers they took
a third to a half of the segmenter's CPU while a backlog of events waited (docs/benchmarks.md,
"the memory bench's drain"). So a pass calls `step` before each chunk, and `step` waits while live
input is waiting (`LiveInput.waiting`: events behind their partition ends, consent changes
fetched and not handled) for as long as the pass stays on its schedule: `total` customers within
`within_s` seconds of its start, in a straight line. A pass therefore never falls behind
total / within_s customers a second by pausing: it ends within `within_s` unless its own work
takes longer, an overrun counted in `segwarden_segmenter_pass_overruns_total`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from types import TracebackType

from services.segmenter.domain.ports import LiveInput
from services.segmenter.metrics import PASS_OVERRUNS, PASS_PAUSED, PASS_SECONDS

POLL_S = 0.05  # how often a paused pass looks again whether live input still waits
MIN_RATE = 500.0  # customers a second (SEGMENTER_PASS_MIN_RATE)
# The passes, as named in the metrics (the periodic ones as their supervised tasks too).
SWEEP, COMPLIANCE, REEVALUATION, RECONCILE = "sweep", "compliance", "reevaluation", "reconcile"


class Pacer:
    def __init__(
        self,
        inputs: Sequence[LiveInput] = (),
        min_rate: float = MIN_RATE,
        intervals: Mapping[str, float] | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        poll_s: float = POLL_S,
    ) -> None:
        self.inputs = inputs
        # A periodic pass is due within its interval; the others at `min_rate` customers a second.
        self.min_rate = min_rate
        self.intervals = dict(intervals or {})
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
        return PacedPass(self, name, total, self.intervals.get(name, total / self.min_rate))


class PacedPass:
    """One pass's schedule; a context manager that records its duration (and an overrun) on exit."""

    def __init__(self, pacer: Pacer, name: str, total: int, within_s: float) -> None:
        self.pacer = pacer
        self.name = name
        self.total = max(1, total)
        self.within_s = within_s
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
        if took > self.within_s:
            PASS_OVERRUNS.labels(self.name).inc()

    def slack(self) -> float:
        """Seconds the pass is ahead of its schedule (<= 0: on it or behind)."""
        due_at = self.started + self.within_s * min(1.0, self.visited / self.total)
        return due_at - self.pacer.clock()

    async def step(self, customers: int) -> None:
        """Before a chunk of `customers`: wait while live input waits and the pass is ahead of its
        schedule (never before the first chunk, nor after the last: the pass is done then)."""
        pacer = self.pacer
        began = pacer.clock()
        while (slack := self.slack()) > 0 and await pacer.waiting():
            await pacer.sleep(min(pacer.poll_s, slack))
        paused = pacer.clock() - began
        if paused > 0:
            self.paused_s += paused
            PASS_PAUSED.labels(self.name).inc(paused)
        self.visited += customers
