"""`DeliveryRuntime`: the composition root, the only place that creates clients."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping

import httpx
from aiokafka import AIOKafkaProducer

from services.delivery.adapters.http_webhooks import HttpxWebhookSender
from services.delivery.adapters.kafka_inputs import KafkaDeliveryInputs
from services.delivery.adapters.kafka_outcomes import KafkaRelay
from services.delivery.adapters.sqlite_store import SqliteDeliveryStore, open_database
from services.delivery.handlers import DestinationGauges, Dispatcher, Pruner, RetryPolicy
from services.delivery.settings import DeliverySettings
from shared import topics
from shared.catalog import load_catalog
from shared.database import hold_for_this_process, sqlite_file
from shared.deadletter import DeadLetters
from shared.http import ReadinessCheck, database_ready, kafka_ready
from shared.kafka import (
    ensure_topics,
    make_consumer,
    make_producer,
    start_client,
    topic_names,
)
from shared.pseudonym import load_pseudonym_key
from shared.supervise import Supervisor

# A webhook in flight is leased for the timeout (which bounds the whole POST) and this margin
# for the store updates around it; a stop waits at most that long for the webhooks in flight.
LEASE_MARGIN_S = 5.0


class DeliveryRuntime:
    def __init__(self, settings: DeliverySettings) -> None:
        self.settings = settings
        self.path = sqlite_file(settings.db_url)
        # One process a store: a second dispatcher would keep breakers and relays of its own
        # beside the first (docs/delivery.md); it is refused before it opens the file.
        self.owner = hold_for_this_process(self.path)
        self.connection = open_database(self.path)
        self.pseudonym_key = load_pseudonym_key(settings)
        self.store = SqliteDeliveryStore(self.connection, self.pseudonym_key)
        names = topic_names(settings)
        self.outcomes = KafkaRelay.outcomes(self.store, names.name(topics.DELIVERY_OUTCOMES))
        self.changes = KafkaRelay.destination_changes(self.store, names.name(topics.DELIVERY_DESTINATIONS))
        self.catalog = load_catalog(settings.purposes_file)
        # Redirects are not followed: a signed body goes to the endpoint the operator set, nowhere else.
        self.http = httpx.AsyncClient(timeout=settings.delivery_timeout_s, follow_redirects=False)
        policy = RetryPolicy(
            settings.delivery_max_attempts,
            settings.delivery_retry_initial_s,
            settings.delivery_retry_cap_s,
            lease_s=settings.delivery_timeout_s + LEASE_MARGIN_S,
            breaker_failures=settings.delivery_breaker_failures,
            breaker_cooldown_s=settings.delivery_breaker_cooldown_s,
        )
        self.gauges = DestinationGauges(self.store)
        self.pruner = Pruner(
            self.store.prune, settings.delivery_outbox_retention_s, settings.delivery_prune_interval_s
        )
        self.dispatcher = Dispatcher(
            self.store,
            HttpxWebhookSender(self.http, settings.delivery_timeout_s),
            policy,
            settings.delivery_concurrency,
            settled=self.outcomes.wake,
            paused=self.destination_changed,
        )
        self.inputs = KafkaDeliveryInputs(names, self.store, self.dispatcher.wake)
        self.producer: AIOKafkaProducer | None = None
        self.supervisor = Supervisor()

    async def start(self) -> None:
        """Schema and dispatcher now; Kafka in the background (HTTP answers while the broker is away)."""
        await asyncio.to_thread(self.store.migrate, self.path)
        self.supervisor.spawn("dispatcher", self.dispatcher.run)
        self.supervisor.spawn("gauges", self.gauges.run)
        self.supervisor.spawn("prune", self.pruner.run)
        self.supervisor.spawn("kafka-connect", self._connect_kafka)

    async def stop(self) -> None:
        await self.supervisor.stop()
        if self.producer is not None:
            await self.producer.stop()
        await self.http.aclose()
        self.connection.close()
        os.close(self.owner)

    def destination_changed(self) -> None:
        """A destination was created, changed, paused, resumed or deleted: refresh its gauges and
        relay the change (already in the store) to the ledger."""
        self.gauges.wake()
        self.changes.wake()

    async def _connect_kafka(self) -> None:
        await self.supervisor.retry("topics", lambda: asyncio.to_thread(ensure_topics, self.settings))
        if self.producer is None:
            self.producer = await start_client(
                lambda: make_producer(self.settings, "segwarden-delivery"), "producer"
            )
        producer = self.producer
        self.supervisor.spawn("outcomes", lambda: self.outcomes.run(producer))
        self.supervisor.spawn("destination-changes", lambda: self.changes.run(producer))
        dead_letters = DeadLetters(
            self.producer, self.pseudonym_key, self.settings.dead_letter_max_value_bytes
        )
        self.supervisor.spawn("consumer", lambda: self._consume(dead_letters))

    async def _consume(self, dead_letters: DeadLetters) -> None:
        """One run of the input consumer on a new client (the supervisor restarts it with another)."""
        topic_list = self.inputs.topics()
        consumer = await start_client(
            lambda: make_consumer(
                self.settings,
                *topic_list,
                group_id=self.settings.consumer_group,
                client_id="segwarden-delivery",
            ),
            "delivery consumer",
        )
        try:
            await self.inputs.run(consumer, dead_letters)
        finally:
            await consumer.stop()

    def readiness_checks(self) -> Mapping[str, ReadinessCheck]:
        return {
            "database": database_ready(self.store.ping),
            "kafka": kafka_ready(lambda: self.producer),
        }
