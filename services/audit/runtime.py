"""`AuditRuntime`: the service's composition root — builds every adapter from settings and runs them."""

from __future__ import annotations

import asyncio
import logging
from contextlib import suppress

from aiokafka import AIOKafkaProducer
from kafka.errors import KafkaError
from sqlalchemy import text

from services.audit.checkpointer import Checkpointer
from services.audit.consumer import KafkaSourceConsumer
from services.audit.database import create_schema, make_engine
from services.audit.relay import KafkaAuditRelay
from services.audit.settings import AuditSettings
from services.audit.side_stores import SqlCheckpointStore, SqlPublicationMark
from services.audit.signing import Ed25519Signer
from services.audit.store import SqlLedgerStore
from shared import topics
from shared.catalog import load_catalog
from shared.kafka import (
    broker_answers,
    ensure_topics,
    make_consumer,
    make_producer,
    start_client,
    topic_names,
)
from shared.pseudonym import load_pseudonym_key

log = logging.getLogger(__name__)


class AuditRuntime:
    def __init__(self, settings: AuditSettings) -> None:
        self.settings = settings
        self.engine = make_engine(settings.database_url())
        self.ledger = SqlLedgerStore(self.engine)
        self.checkpoints = SqlCheckpointStore(self.engine)
        self.signer = Ed25519Signer.from_data_dir(settings.ensure_data_dir())
        self.pseudonym_key = load_pseudonym_key(settings)
        self.catalog = load_catalog(settings.purposes_file)
        self.checkpointer = Checkpointer(self.ledger, self.checkpoints, self.signer)
        audit_log = topic_names(settings).name(topics.AUDIT_LOG)
        self.relay = KafkaAuditRelay(self.ledger, SqlPublicationMark(self.engine), audit_log)
        self.consumer = KafkaSourceConsumer(settings, self.ledger, self.pseudonym_key, self.relay.wake)
        self.producer: AIOKafkaProducer | None = None
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        """Schema now; Kafka in the background, so HTTP answers while the broker is away."""
        await asyncio.to_thread(create_schema, self.engine)
        interval = self.settings.checkpoint_interval
        self._tasks = [
            asyncio.create_task(self.checkpointer.run(interval)),
            asyncio.create_task(self._run_kafka()),
        ]
        for task in self._tasks:
            task.add_done_callback(_report_crash)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with suppress(asyncio.CancelledError):
                await task
        if self.producer is not None:
            await self.producer.stop()
        self.engine.dispose()

    async def _run_kafka(self) -> None:
        await self._ensure_topics()
        self.producer = await start_client(
            lambda: make_producer(self.settings, "segwarden-audit"), "producer"
        )
        probe = await start_client(
            lambda: make_consumer(self.settings, group_id=None, client_id="segwarden-audit-probe"), "probe"
        )
        try:
            await self.relay.resume(probe)
        finally:
            await probe.stop()
        await asyncio.gather(self.relay.run(self.producer), self.consumer.run(self.producer))

    async def _ensure_topics(self) -> None:
        delay = 0.2
        while True:
            try:
                await asyncio.to_thread(ensure_topics, self.settings)
                return
            except KafkaError as exc:
                log.warning("cannot create topics yet", extra={"error": repr(exc)})
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def kafka_ready(self) -> str | None:
        if self.producer is None:
            return "kafka: connecting"
        return await broker_answers(self.producer)

    async def consumer_ready(self) -> str | None:
        return self.consumer.not_ready()

    async def database_ready(self) -> str | None:
        def ping() -> None:
            with self.engine.connect() as connection:
                connection.execute(text("SELECT 1"))

        await asyncio.to_thread(ping)
        return None


def _report_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("a background task of the audit service died", exc_info=task.exception())
