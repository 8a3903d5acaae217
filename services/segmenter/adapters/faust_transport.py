"""Small overrides of faust: our fetch wait, faust's co-partitioning assignor, no table grace.

faust-streaming 0.15.3 builds its worker consumer with a fixed `fetch_max_wait_ms=1500`; on the
embedded broker an idle fetch sleeps out most of that wait, which is the whole eviction budget
(docs/broker.md: one hop 388/759 ms p50/p99 at 1,500 ms, 22/42 ms at 50 ms). Without tables it
also falls back to round-robin assignment, which splits a customer's partitions of different
topics across workers; faust's own assignor keeps co-partitioned topics on one worker, so one
process sees a customer's events, consent changes and erasures.
"""

from __future__ import annotations

from typing import Any

import faust
from faust.tables import TableManager
from faust.transport.drivers import aiokafka as faust_aiokafka


class _ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        app: SegmenterFaustApp = self.app  # type: ignore[assignment]
        # aiokafka reads both when it starts, which is after this returns.
        consumer._fetch_max_wait_ms = app.fetch_max_wait_ms
        consumer._partition_assignment_strategy = [app.assignor]
        return consumer


class _Consumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class _Transport(faust_aiokafka.Transport):
    Consumer = _Consumer


class _TablesDefinedAtImport(TableManager):
    """faust's table manager without its start-up grace: faust sleeps 1 s before finalizing the
    tables, so that tables defined while the app starts can still register. The segmenter defines
    none (its state is in Redis), so the sleep delayed every start and the group join behind it by
    a second; a table added after start is still refused ("Too late to add tables")."""

    async def on_start(self) -> None:
        if not self.should_stop:
            await self._update_channels()
            await self.recovery.start()


class SegmenterFaustApp(faust.App):
    """faust.App whose consumer waits at most `fetch_max_wait_ms` for data, and whose start does
    not wait for tables to be defined."""

    fetch_max_wait_ms = 50

    def __init__(self, id: str, **options: Any) -> None:
        super().__init__(id, TableManager=_TablesDefinedAtImport, **options)

    def _new_transport(self) -> Any:
        return _Transport(self.conf.broker_consumer, self)
