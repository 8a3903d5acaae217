"""KafkaDeliveryInputs with an in-memory store: a record that cannot be routed is dead-lettered
and the stream goes on; a locked store is waited out, never a reason to skip a record."""

from __future__ import annotations

import sqlite3
from datetime import UTC, date, datetime

from aiokafka.structs import ConsumerRecord

from services.delivery.adapters.kafka_inputs import KafkaDeliveryInputs
from services.delivery.domain.routing import Cause, Intent
from services.delivery.handlers import Update
from shared.events import MembershipChanged, new_event_id
from shared.topics import TopicNames
from tests.unit.shared.test_supervise import Producer, sink


class Store:
    """Routes every customer but `c-bad` (a bug: ValueError); `locked` times a locked database."""

    def __init__(self, locked: int = 0) -> None:
        self.routed: list[str] = []
        self.locked = locked

    def route(self, customer_id: str, update: Update, cause: Cause, today: date, at: str) -> list[Intent]:
        if self.locked:
            self.locked -= 1
            raise sqlite3.OperationalError("database is locked")
        if customer_id == "c-bad":
            raise ValueError("a routing bug")
        self.routed.append(customer_id)
        return []


def membership(customer: str, offset: int) -> ConsumerRecord:
    value = MembershipChanged(
        event_id=new_event_id(),
        segment_id="vip",
        customer_id=customer,
        action="joined",
        reason="rule_matched",
        cause_event_id=None,
        cause_at=None,
        at=datetime.now(UTC),
    ).to_bytes()
    return ConsumerRecord(
        "segment.membership", 0, offset, 0, 0, customer.encode(), value, None, 0, len(value), ()
    )


async def test_a_record_that_cannot_be_routed_is_dead_lettered_and_the_next_is_routed() -> None:
    store, producer = Store(), Producer()
    inputs = KafkaDeliveryInputs(TopicNames(), store, lambda: None)
    await inputs.handle(membership("c-bad", 0), sink(producer))
    await inputs.handle(membership("c-good", 1), sink(producer))
    assert store.routed == ["c-good"]
    [(topic, letter)] = producer.sent
    assert topic == "segment.membership.dlq" and letter["offset"] == 0
    assert letter["error"].startswith("could not be processed: ValueError at")


async def test_a_locked_store_is_waited_out() -> None:
    store, producer = Store(locked=2), Producer()
    inputs = KafkaDeliveryInputs(TopicNames(), store, lambda: None)
    await inputs.handle(membership("c-good", 0), sink(producer))
    assert store.routed == ["c-good"] and producer.sent == []
