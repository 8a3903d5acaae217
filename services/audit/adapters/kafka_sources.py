"""`KafkaSourceConsumer`: reads the source topics and appends one record per source event.

Exactly once however often a record is delivered: the ledger skips event ids it holds, in the
same transaction as the append, and offsets are committed only after that transaction.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.structs import ConsumerRecord
from sqlalchemy.exc import SQLAlchemyError

from services.audit.adapters.sql_ledger import SqlLedgerStore
from services.audit.domain import sources
from services.audit.domain.ledger import AppendResult
from services.audit.domain.sources import SourceItem
from services.audit.metrics import DUPLICATES_SKIPPED, LEDGER_LENGTH, RECORDS_APPENDED
from services.audit.settings import AuditSettings
from shared import events, topics
from shared.deadletter import DeadLetters, decode_or_dead_letter, send_dead_letter
from shared.failpoints import failpoint
from shared.kafka import clamp_lag, topic_names
from shared.metrics import CONSUMER_LAG, MESSAGES_CONSUMED
from shared.supervise import STEP_RETRIES, TRANSIENT, describe_failure, retry

log = logging.getLogger(__name__)

# Source topic -> (its model, how a decoded event becomes a ledger entry under the pseudonym key).
_EVENT_SOURCES: dict[topics.TopicSpec, tuple[type[Any], Callable[[bytes, Any], SourceItem]]] = {
    topics.CONSENT_CHANGES: (events.ConsentChanged, sources.consent_change),
    topics.SEGMENT_MEMBERSHIP: (events.MembershipChanged, sources.membership_change),
    topics.ERASURE_REQUESTS: (events.ErasureRequested, sources.erasure_request),
    topics.MODEL_TRAININGS: (events.ModelTrained, sources.model_trained),
    topics.RETENTION_RUNS: (events.RetentionRun, sources.retention_run),
    topics.DELIVERY_OUTCOMES: (events.DeliveryOutcome, sources.delivery_outcome),
    topics.DELIVERY_DESTINATIONS: (events.DestinationChanged, sources.destination_change),
}


class KafkaSourceConsumer:
    def __init__(
        self, settings: AuditSettings, ledger: SqlLedgerStore, key: bytes, on_appended: Callable[[], None]
    ) -> None:
        self.settings, self.ledger, self.key, self.on_appended = settings, ledger, key, on_appended
        names = topic_names(settings)
        self.specs = {names.name(spec): spec for spec in (*_EVENT_SOURCES, topics.SEGMENT_DEFINITIONS)}
        self.consumer: AIOKafkaConsumer | None = None
        self.caught_up = False

    def not_ready(self) -> str | None:
        """Why the ledger may still miss what the topics hold, or None once it caught up."""
        if self.consumer is None or not self.consumer.assignment():
            return "consumer: waiting for its partitions"
        return None if self.caught_up else "consumer: catching up with the source topics"

    def topics(self) -> list[str]:
        """The (prefixed) source topics the consumer passed to `run` must subscribe to."""
        return sorted(self.specs)

    async def run(self, consumer: AIOKafkaConsumer, dead_letters: DeadLetters) -> None:
        """Append what `consumer` (started, subscribed to `topics()`) delivers; its creator stops it."""
        self.consumer = consumer
        uncommitted = False
        while True:
            batches = await consumer.getmany(timeout_ms=500, max_records=self.settings.audit_batch_size)
            records = [record for part in batches.values() for record in part]
            if records:
                await self._ingest(dead_letters, records)
                failpoint("audit.mid_batch")  # appended, offsets not yet committed
            if records or uncommitted:
                uncommitted = not await self._commit()
            # Caught up once a poll found nothing new or no partition lags (latched).
            lagging = await self._report_lag()
            assigned = bool(consumer.assignment())
            self.caught_up = self.caught_up or (assigned and (not records or not lagging))

    async def _ingest(self, dead_letters: DeadLetters, records: list[ConsumerRecord]) -> None:
        items = [item for record in records if (item := await self._decode(dead_letters, record)) is not None]
        result = await self._append(items)
        for record in result.appended:
            RECORDS_APPENDED.labels(record.kind).inc()
        DUPLICATES_SKIPPED.inc(result.duplicates)
        if result.appended:
            LEDGER_LENGTH.set(result.appended[-1].seq + 1)
            self.on_appended()
        log.debug("appended", extra={"appended": len(result.appended), "duplicates": result.duplicates})

    async def _append(self, items: list[SourceItem]) -> AppendResult:
        """Append, retrying while the database is away: the offsets wait, nothing is skipped."""
        return await retry(
            "ledger-append", lambda: asyncio.to_thread(self.ledger.append, items), (SQLAlchemyError,)
        )

    async def _commit(self) -> bool:
        """Commit the appended records' offsets; False when refused, to be tried again next round.

        Nothing is skipped meanwhile (the records are in the ledger) and nothing is appended
        twice: if the group moved on, the new owner redelivers them and the ledger skips their
        event ids. A refused commit must not end the consumer, or the ledger stalls.
        """
        assert self.consumer is not None
        try:
            failpoint("audit.commit")
            await self.consumer.commit()
        except TRANSIENT as exc:
            STEP_RETRIES.labels("audit-commit").inc()
            log.warning("offset commit failed; retrying next round", extra={"reason": describe_failure(exc)})
            return False
        return True

    async def _decode(self, dead_letters: DeadLetters, record: ConsumerRecord) -> SourceItem | None:
        MESSAGES_CONSUMED.labels(record.topic).inc()
        spec = self.specs[record.topic]
        if spec is topics.SEGMENT_DEFINITIONS:
            return await self._decode_definition(dead_letters, record)
        model, to_item = _EVENT_SOURCES[spec]
        event = await decode_or_dead_letter(dead_letters, record, model)
        return None if event is None else to_item(self.key, event)

    async def _decode_definition(
        self, dead_letters: DeadLetters, record: ConsumerRecord
    ) -> sources.DefinitionChange | None:
        if record.value is None:
            segment_id = record.key.decode("utf-8", errors="replace") if record.key else ""
            if not segment_id:
                await send_dead_letter(
                    dead_letters, record, "key: a tombstone needs the segment id as its key"
                )
                return None
            return sources.DefinitionChange(segment_id)
        definition = await decode_or_dead_letter(dead_letters, record, events.SegmentDefinition)
        return None if definition is None else sources.definition_change(self.key, definition)

    async def _report_lag(self) -> int:
        """Set the lag gauges; the number of partitions that lag."""
        assert self.consumer is not None
        lagging = 0
        for tp in self.consumer.assignment():
            lag = clamp_lag(self.consumer.highwater(tp), await self.consumer.position(tp))
            CONSUMER_LAG.labels(self.settings.consumer_group, tp.topic, str(tp.partition)).set(lag)
            lagging += lag > 0
        return lagging
