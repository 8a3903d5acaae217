"""Re-evaluates changed segments for the owned customers in the background, one pass for all.

A segment PUT or DELETE (or a model change) only marks the segment here: the request never waits
for the customers. One supervised task then visits every customer of the owned partitions once
for all the segments marked when its pass began, so a catalogue that grows by a thousand segments
costs a few passes, not a thousand. A segment marked again during a pass stays marked and the
next pass visits every customer again (those read before the change saw the old definition). A
failure leaves every mark in place and the supervisor runs the pass again; a crash of the process
loses the marks, and the start-up re-evaluation (every segment is marked at start) redoes them.
Progress is on /metrics: segments still marked and customers the running pass has not visited.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from services.segmenter.metrics import REEVALUATION_PENDING_CUSTOMERS, REEVALUATION_PENDING_SEGMENTS
from services.segmenter.sweeps import Sweeper

TASK = "segment-reevaluation"


class SegmentReevaluator:
    def __init__(self) -> None:
        self.sweeper: Sweeper | None = None  # set once the stream owns partitions (bootstrap)
        self._marks: dict[str, tuple[int, bool]] = {}  # segment -> (mark number, deleted)
        self._marked = 0
        self._wake = asyncio.Event()

    def mark(self, segment_ids: Iterable[str], deleted: bool = False) -> None:
        """Re-evaluate these segments (empty them when `deleted`) in the next pass."""
        for segment_id in segment_ids:
            self._marked += 1
            self._marks[segment_id] = (self._marked, deleted)
        REEVALUATION_PENDING_SEGMENTS.set(len(self._marks))
        self._wake.set()

    def pending(self) -> int:
        return len(self._marks)

    async def run(self) -> None:
        while True:
            if not self._marks:
                self._wake.clear()
                await self._wake.wait()
            await self.pass_once()

    async def pass_once(self) -> None:
        """One pass over the owned customers for every segment marked now; the marks it served
        are cleared unless the segment was marked again meanwhile."""
        assert self.sweeper is not None
        todo = dict(self._marks)
        deleted = {s for s, (_, gone) in todo.items() if gone}
        try:
            if deleted:
                await self.sweeper.reevaluate(deleted, deleted=True)
            if len(todo) > len(deleted):
                await self.sweeper.reevaluate(set(todo) - deleted, deleted=False)
        finally:
            REEVALUATION_PENDING_CUSTOMERS.set(0)
        for segment_id, mark in todo.items():
            if self._marks.get(segment_id) == mark:
                del self._marks[segment_id]
        REEVALUATION_PENDING_SEGMENTS.set(len(self._marks))
