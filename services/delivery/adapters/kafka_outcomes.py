"""Relays from the store's outboxes to Kafka: each settled webhook's outcome to
`delivery.outcomes`, each change to a destination to `delivery.destinations`.

A row is marked reported only after the broker acknowledged its record, so a crash in between
publishes it again under the same `event_id`, which the ledger records once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol

from aiokafka import AIOKafkaProducer

from shared.events import DeliveryOutcome, DestinationChanged, Message
from shared.metrics import MESSAGES_PUBLISHED
from shared.supervise import within

BATCH = 200


class OutcomeStore(Protocol):
    def unreported(self, limit: int) -> list[dict[str, Any]]: ...
    def mark_reported(self, seqs: list[int]) -> None: ...


class ChangeStore(Protocol):
    def unreported_changes(self, limit: int) -> list[dict[str, Any]]: ...
    def mark_changes_reported(self, seqs: list[int]) -> None: ...


def outcome(row: dict[str, Any]) -> tuple[bytes, DeliveryOutcome]:
    record = DeliveryOutcome(
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
    return record.subject.encode(), record


def destination_change(row: dict[str, Any]) -> tuple[bytes, DestinationChanged]:
    record = DestinationChanged(
        event_id=f"{row['destination_id']}:{row['seq']}",
        destination_id=row["destination_id"],
        change=row["change"],
        segments=json.loads(row["segments"]),
        purposes=json.loads(row["purposes"]),
        pending=row["pending"],
        at=datetime.fromtimestamp(row["at"], UTC),
    )
    return record.destination_id.encode(), record


class KafkaRelay:
    """Publishes an outbox's unreported rows in order, then waits for a wake-up (or a second)."""

    def __init__(
        self,
        unreported: Callable[[int], list[dict[str, Any]]],
        mark_reported: Callable[[list[int]], None],
        record: Callable[[dict[str, Any]], tuple[bytes, Message]],
        topic: str,
    ) -> None:
        self.unreported, self.mark_reported, self.record, self.topic = (
            unreported,
            mark_reported,
            record,
            topic,
        )
        self._wake = asyncio.Event()

    @classmethod
    def outcomes(cls, store: OutcomeStore, topic: str) -> KafkaRelay:
        return cls(store.unreported, store.mark_reported, outcome, topic)

    @classmethod
    def destination_changes(cls, store: ChangeStore, topic: str) -> KafkaRelay:
        return cls(store.unreported_changes, store.mark_changes_reported, destination_change, topic)

    def wake(self) -> None:
        self._wake.set()

    async def run(self, producer: AIOKafkaProducer) -> None:
        while True:
            self._wake.clear()
            rows = await asyncio.to_thread(self.unreported, BATCH)
            if rows:
                await self._publish(producer, rows)
                continue
            with contextlib.suppress(TimeoutError):
                await within(1.0, self._wake.wait())

    async def _publish(self, producer: AIOKafkaProducer, rows: list[dict[str, Any]]) -> None:
        sent = []
        for row in rows:
            key, record = self.record(row)
            sent.append(await producer.send(self.topic, record.to_bytes(), key=key))
        await asyncio.gather(*sent)  # every record acknowledged before any row is marked
        MESSAGES_PUBLISHED.labels(self.topic).inc(len(rows))
        await asyncio.to_thread(self.mark_reported, [row["seq"] for row in rows])
