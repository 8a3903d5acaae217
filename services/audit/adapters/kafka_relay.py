"""`KafkaAuditRelay`: publishes the ledger to `audit.log` in ledger order, after each commit.

The database remembers how far it published, so a restart (or a broker that forgot its
topics) resumes from there: the contract's Restarts section. Delivery is at least once;
readers de-duplicate on `seq`.
"""

from __future__ import annotations

import asyncio
import json
import logging
from contextlib import suppress

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from services.audit.adapters.sql_ledger import SqlLedgerStore
from services.audit.adapters.sql_side_stores import SqlPublicationMark
from shared.metrics import MESSAGES_PUBLISHED
from shared.supervise import within

log = logging.getLogger(__name__)
# Appends by another process on the same database are picked up within this many seconds.
_POLL_SECONDS = 1.0


class KafkaAuditRelay:
    def __init__(
        self, ledger: SqlLedgerStore, mark: SqlPublicationMark, topic: str, chunk: int = 1000
    ) -> None:
        self.ledger, self.mark, self.topic, self.chunk = ledger, mark, topic, chunk
        self._wake = asyncio.Event()

    def wake(self) -> None:
        self._wake.set()

    async def resume(self, probe: AIOKafkaConsumer) -> None:
        """Start over when `audit.log` is empty but records were published (the broker forgot)."""
        partition = TopicPartition(self.topic, 0)
        end = (await probe.end_offsets([partition]))[partition]
        published = await asyncio.to_thread(self.mark.get)
        if end == 0 and published >= 0:
            log.warning("audit.log is empty; publishing the ledger again", extra={"records": published + 1})
            await asyncio.to_thread(self.mark.set, -1)

    async def run(self, producer: AIOKafkaProducer) -> None:
        """Publish after each wake-up or poll; a failure ends the run (the supervisor restarts it).

        Nothing is lost then: the mark did not move, so the next run sends the records again.
        """
        while True:
            self._wake.clear()
            while await self.publish_pending(producer):
                pass
            with suppress(TimeoutError):
                await within(_POLL_SECONDS, self._wake.wait())

    async def publish_pending(self, producer: AIOKafkaProducer) -> int:
        """Publish up to one chunk of unpublished records; the number published."""
        last = await asyncio.to_thread(self.mark.get)
        pending = await asyncio.to_thread(self.ledger.find, None, None, last, self.chunk)
        if not pending:
            return 0
        sent = []
        for record in pending:
            value = json.dumps(record.to_dict(), ensure_ascii=False, separators=(",", ":")).encode()
            sent.append(await producer.send(self.topic, value, key=str(record.seq).encode(), partition=0))
        await asyncio.gather(*sent)
        await asyncio.to_thread(self.mark.set, pending[-1].seq)
        MESSAGES_PUBLISHED.labels(self.topic).inc(len(pending))
        return len(pending)
