"""`AuditRuntime`: the composition root, the only place that creates clients; builds and runs the adapters."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

from aiokafka import AIOKafkaProducer

from services.audit.adapters.ed25519 import Ed25519Signer
from services.audit.adapters.http_destinations import HttpDestinations
from services.audit.adapters.kafka_relay import KafkaAuditRelay
from services.audit.adapters.kafka_sources import KafkaSourceConsumer
from services.audit.adapters.sql_database import create_schema, make_engine, ping
from services.audit.adapters.sql_ledger import SqlLedgerStore
from services.audit.adapters.sql_side_stores import SqlCheckpointStore, SqlPublicationMark
from services.audit.api.heavy import HeavyRequests
from services.audit.handlers import Checkpointer
from services.audit.settings import AuditSettings
from shared import topics
from shared.auth import internal_token
from shared.catalog import load_catalog
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

log = logging.getLogger(__name__)


class AuditRuntime:
    def __init__(self, settings: AuditSettings) -> None:
        self.settings = settings
        self.engine = make_engine(settings.db_url)
        self.ledger = SqlLedgerStore(self.engine)
        self.checkpoints = SqlCheckpointStore(self.engine)
        self.signer = Ed25519Signer.from_data_dir(settings.ensure_data_dir())
        self.pseudonym_key = load_pseudonym_key(settings)
        self.catalog = load_catalog(settings.purposes_file)
        self.destinations = HttpDestinations(settings.delivery_url, internal_token(settings))
        self.checkpointer = Checkpointer(self.ledger, self.checkpoints, self.signer)
        self.heavy = HeavyRequests(settings.audit_heavy_requests)
        audit_log = topic_names(settings).name(topics.AUDIT_LOG)
        self.relay = KafkaAuditRelay(self.ledger, SqlPublicationMark(self.engine), audit_log)
        self.consumer = KafkaSourceConsumer(settings, self.ledger, self.pseudonym_key, self.relay.wake)
        self.producer: AIOKafkaProducer | None = None
        self.supervisor = Supervisor()

    async def start(self) -> None:
        """Schema now; Kafka in the background, so HTTP answers while the broker is away."""
        await asyncio.to_thread(create_schema, self.engine)
        # The migration of a ledger from before stored Merkle nodes: before the first proof.
        if written := await asyncio.to_thread(self.ledger.backfill_nodes):
            log.info("stored the Merkle nodes of existing records", extra={"nodes": written})
        checkpoint = self.checkpointer.checkpoint
        interval = self.settings.audit_checkpoint_interval_s
        self.supervisor.every("checkpointer", interval, lambda: asyncio.to_thread(checkpoint), first_now=True)
        self.supervisor.spawn("kafka-connect", self._connect_kafka)

    async def stop(self) -> None:
        await self.supervisor.stop()
        if self.producer is not None:
            await self.producer.stop()
        self.engine.dispose()

    async def _connect_kafka(self) -> None:
        """Topics, producer and the relay's resume point; then the relay and consumer, supervised."""
        await self.supervisor.retry("topics", lambda: asyncio.to_thread(ensure_topics, self.settings))
        if self.producer is None:
            self.producer = await start_client(
                lambda: make_producer(self.settings, "segwarden-audit"), "producer"
            )
        producer = self.producer
        probe = await start_client(
            lambda: make_consumer(self.settings, group_id=None, client_id="segwarden-audit-probe"), "probe"
        )
        try:
            await self.relay.resume(probe)
        finally:
            await probe.stop()
        self.supervisor.spawn("relay", lambda: self.relay.run(producer))
        dead_letters = DeadLetters(producer, self.pseudonym_key, self.settings.dead_letter_max_value_bytes)
        self.supervisor.spawn("consumer", lambda: self._consume(dead_letters))

    async def _consume(self, dead_letters: DeadLetters) -> None:
        """One run of the source consumer on a new client (the supervisor restarts it with another)."""
        group, client_id = self.settings.consumer_group, "segwarden-audit"
        topic_list = self.consumer.topics()
        consumer = await start_client(
            lambda: make_consumer(self.settings, *topic_list, group_id=group, client_id=client_id),
            "audit consumer",
        )
        try:
            await self.consumer.run(consumer, dead_letters)
        finally:
            await consumer.stop()

    def readiness_checks(self) -> Mapping[str, ReadinessCheck]:
        return {
            "database": database_ready(lambda: ping(self.engine)),
            "kafka": kafka_ready(lambda: self.producer),
            "consumer": self._consumer_ready,
        }

    async def _consumer_ready(self) -> str | None:
        """Caught up with the source topics (the ledger holds what they held at start)."""
        return self.consumer.not_ready()
