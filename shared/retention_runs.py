"""`KafkaRetentionRuns`: each retention job's run out to `retention.runs`, where the audit service
records it: counts, never who. Shared by the consent and segmenter jobs, so a run is recorded
the same way whichever service let go of the data."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

from aiokafka import AIOKafkaProducer

from shared.events import RetentionRun
from shared.metrics import MESSAGES_PUBLISHED
from shared.supervise import retry
from shared.topics import RETENTION_RUNS, TopicNames


class RetentionRuns(Protocol):
    async def record(self, run: RetentionRun) -> None:
        """Hand the run to the audit ledger; returns once it is on the broker."""
        ...


class KafkaRetentionRuns:
    def __init__(self, producer: Callable[[], Awaitable[AIOKafkaProducer]], names: TopicNames) -> None:
        # A getter: the consent service connects to the broker after its jobs start.
        self.producer = producer
        self.topic = names.name(RETENTION_RUNS)

    async def record(self, run: RetentionRun) -> None:
        producer = await self.producer()

        async def send() -> None:
            await producer.send_and_wait(self.topic, run.to_bytes(), key=run.service.encode())

        # The run's effects are committed: its record waits out a broker outage (one event id,
        # so a send that reached the broker before its ack was lost is recorded once).
        await retry("retention record", send)
        MESSAGES_PUBLISHED.labels(self.topic).inc()
