"""`KafkaConsentRequestConsumer`: consent choices from consent.requests, validated like the API."""

from __future__ import annotations

import logging

from aiokafka import AIOKafkaConsumer
from aiokafka.structs import ConsumerRecord

from services.consent.domain.consent import InvalidConsentError, RecordConsent
from services.consent.service import ConsentService
from shared.deadletter import DeadLetters, decode_or_dead_letter, send_dead_letter
from shared.events import ConsentRequested
from shared.failpoints import failpoint
from shared.metrics import MESSAGES_CONSUMED
from shared.supervise import handle_or_dead_letter

log = logging.getLogger(__name__)


def command_from(request: ConsentRequested) -> RecordConsent:
    return RecordConsent(
        customer_id=request.customer_id,
        purpose=request.purpose,
        status=request.status,
        source=request.source,
        jurisdiction=request.jurisdiction,
        policy_version=request.policy_version,
        expires_at=request.expires_at,
        notice_version=request.notice_version,
        method="kafka",
        request_id=request.request_id,
    )


class KafkaConsentRequestConsumer:
    """Records each request once (dedupe on request_id in the same transaction), commits after."""

    def __init__(
        self, consumer: AIOKafkaConsumer, dead_letters: DeadLetters, service: ConsentService
    ) -> None:
        self.consumer = consumer
        self.dead_letters = dead_letters
        self.service = service

    async def run(self) -> None:
        while True:
            batches = await self.consumer.getmany(timeout_ms=500, max_records=200)
            for records in batches.values():
                for record in records:
                    await self.handle(record)
                    # Recorded, offset not committed: a crash here redelivers what was recorded.
                    failpoint("consent.requests_mid_batch")
            if batches:
                await self.consumer.commit()

    async def handle(self, record: ConsumerRecord) -> None:
        MESSAGES_CONSUMED.labels(record.topic).inc()
        request = await decode_or_dead_letter(self.dead_letters, record, ConsentRequested)
        if request is None:
            return

        async def record_it(_: object) -> None:
            try:
                await self.service.record(command_from(request))
            except InvalidConsentError as exc:
                await send_dead_letter(self.dead_letters, record, str(exc))

        # The store is the system of record: wait for it (a transient error) rather than skip the
        # request; a request that fails otherwise goes to the dead-letter topic.
        await handle_or_dead_letter(self.dead_letters, "consent.requests", [record], record_it)
