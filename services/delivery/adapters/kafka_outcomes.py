"""KafkaOutcomeRelay: each settled webhook's outcome from the outbox to `delivery.outcomes`.

The outbox row is marked reported only after the broker acknowledged the record, so a crash in
between publishes it again under the same `event_id`, which the ledger records once.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime
from typing import Any, Protocol

from aiokafka import AIOKafkaProducer

from shared.events import DeliveryOutcome
from shared.metrics import MESSAGES_PUBLISHED

BATCH = 200


class OutcomeStore(Protocol):
    def unreported(self, limit: int) -> list[dict[str, Any]]: ...
    def mark_reported(self, seqs: list[int]) -> None: ...


def outcome(row: dict[str, Any]) -> DeliveryOutcome:
    return DeliveryOutcome(
        event_id=f"{row['idempotency_key']}:{row['status']}",
        subject=row["ledger_subject"],
        destination_id=row["destination_id"],
        segment_id=row["segment_id"],
        action=row["action"],
        reason=row["reason"],
        status=row["status"],
        attempts=row["attempts"],
        # A row settled before `settled_at` was stored is reported as ending now.
        at=datetime.fromtimestamp(row["settled_at"], UTC) if row["settled_at"] else datetime.now(UTC),
    )


class KafkaOutcomeRelay:
    def __init__(self, store: OutcomeStore, topic: str) -> None:
        self.store, self.topic = store, topic
        self._wake = asyncio.Event()

    def wake(self) -> None:
        self._wake.set()

    async def run(self, producer: AIOKafkaProducer) -> None:
        """Publish what is unreported; then wait for the next settled webhook (or a second)."""
        while True:
            self._wake.clear()
            rows = await asyncio.to_thread(self.store.unreported, BATCH)
            if rows:
                await self._publish(producer, rows)
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), 1.0)

    async def _publish(self, producer: AIOKafkaProducer, rows: list[dict[str, Any]]) -> None:
        sent = []
        for row in rows:
            record = outcome(row)
            sent.append(await producer.send(self.topic, record.to_bytes(), key=record.subject.encode()))
        await asyncio.gather(*sent)  # every record acknowledged before any row is marked
        MESSAGES_PUBLISHED.labels(self.topic).inc(len(rows))
        await asyncio.to_thread(self.store.mark_reported, [row["seq"] for row in rows])
