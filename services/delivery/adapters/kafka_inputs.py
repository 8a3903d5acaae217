"""KafkaDeliveryInputs: `segment.membership`, `consent.changes`, `consent.state` and
`erasure.requests` into the outbox.

One consumer group reads the four; each record is routed in one store transaction (state,
holdings, outbox rows unique on their idempotency key), and offsets are committed after the
records of a fetch are routed, so a redelivered record finds its webhooks already enqueued.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime

from aiokafka import AIOKafkaConsumer
from aiokafka.structs import ConsumerRecord

from services.delivery.domain.routing import Cause
from services.delivery.handlers import (
    RoutingStore,
    Update,
    consent_change_update,
    consent_state_update,
    erased_update,
    membership_update,
)
from shared import topics
from shared.deadletter import DeadLetters, decode_or_dead_letter, send_dead_letter
from shared.events import (
    ConsentChanged,
    ConsentStateSnapshot,
    ErasureRequested,
    MembershipChanged,
    key_id,
    utcnow,
)
from shared.failpoints import failpoint
from shared.metrics import MESSAGES_CONSUMED
from shared.supervise import TRANSIENT as SHARED_TRANSIENT
from shared.supervise import handle_or_dead_letter
from shared.topics import TopicNames

# The delivery store is sqlite3 itself (not SQLAlchemy): its OperationalError is a locked or
# unreachable database, worth waiting for like any store outage.
TRANSIENT = (*SHARED_TRANSIENT, sqlite3.OperationalError)


class KafkaDeliveryInputs:
    def __init__(self, names: TopicNames, store: RoutingStore, routed: Callable[[], None]) -> None:
        self.store, self.routed = store, routed
        self.membership = names.name(topics.SEGMENT_MEMBERSHIP)
        self.changes = names.name(topics.CONSENT_CHANGES)
        self.state = names.name(topics.CONSENT_STATE)
        self.erasures = names.name(topics.ERASURE_REQUESTS)

    def topics(self) -> list[str]:
        return [self.membership, self.changes, self.state, self.erasures]

    async def run(self, consumer: AIOKafkaConsumer, dead_letters: DeadLetters) -> None:
        while True:
            batches = await consumer.getmany(timeout_ms=1000)
            for tp, records in batches.items():
                for record in records:
                    MESSAGES_CONSUMED.labels(tp.topic).inc()
                    await self.handle(record, dead_letters)
                    failpoint("delivery.after_route")  # in the outbox, the offset not yet committed
                await consumer.commit({tp: records[-1].offset + 1})

    async def handle(self, record: ConsumerRecord, dead_letters: DeadLetters) -> None:
        """Route one record, waiting out transient errors (a locked or unreachable store among
        them); one that fails otherwise goes to its dead-letter topic and the stream goes on."""
        await handle_or_dead_letter(
            dead_letters, "delivery-inputs", [record], lambda _: self._route(record, dead_letters), TRANSIENT
        )

    async def _route(self, record: ConsumerRecord, dead_letters: DeadLetters) -> None:
        decoded = await self._decode(record, dead_letters)
        if decoded is None:
            return
        customer_id, (update, cause) = decoded
        now = datetime.now(UTC)
        intents = await asyncio.to_thread(
            self.store.route, customer_id, update, cause, now.date(), utcnow().isoformat()
        )
        if intents:
            self.routed()

    async def _decode(
        self, record: ConsumerRecord, dead_letters: DeadLetters
    ) -> tuple[str, tuple[Update, Cause]] | None:
        if record.topic == self.state:
            if record.value is None:  # the tombstone an erasure leaves
                customer_id = key_id(record.key, "customer")
                if customer_id is None:
                    error = "key: a tombstone's key is not a customer id"
                    await send_dead_letter(dead_letters, record, error)
                    return None
                mark = f"{record.topic}:{record.partition}:{record.offset}"
                return customer_id, erased_update(mark, record.timestamp / 1000)  # the broker's ms
            snapshot = await decode_or_dead_letter(dead_letters, record, ConsentStateSnapshot)
            return None if snapshot is None else (snapshot.customer_id, consent_state_update(snapshot))
        if record.topic == self.erasures:
            erasure = await decode_or_dead_letter(dead_letters, record, ErasureRequested)
            if erasure is None:
                return None
            return erasure.customer_id, erased_update(erasure.event_id, erasure.requested_at.timestamp())
        if record.topic == self.changes:
            change = await decode_or_dead_letter(dead_letters, record, ConsentChanged)
            return None if change is None else (change.customer_id, consent_change_update(change, utcnow()))
        membership = await decode_or_dead_letter(dead_letters, record, MembershipChanged)
        return None if membership is None else (membership.customer_id, membership_update(membership))
