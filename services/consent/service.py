"""`ConsentService`: the async face of the use cases (store calls in threads, publication, metrics)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any, Protocol

from services.consent import handlers, metrics
from services.consent.adapters.sql_store import SqlConsentStore
from services.consent.domain.consent import ConsentEntry, RecordConsent
from services.consent.domain.policy import ConsentPolicy
from services.consent.writer import GroupCommitWriter
from shared.events import ErasureRequested, PurposeState, utcnow
from shared.failpoints import failpoint
from shared.pseudonym import pseudonymize

log = logging.getLogger(__name__)


class Publication(Protocol):
    """What publishes commits (the outbox relay): a ticket per commit, and whether it is out."""

    def committed(self) -> int: ...

    async def published(self, ticket: int, timeout: float) -> bool: ...


@dataclass(frozen=True)
class Recorded:
    """A committed choice: its rows, and the ticket to wait on for their publication."""

    entries: list[ConsentEntry]
    ticket: int


class ConsentService:
    def __init__(
        self,
        store: SqlConsentStore,
        policy: ConsentPolicy,
        pseudonym_key: bytes,
        publication: Publication,
        publish_wait: float,
    ) -> None:
        self.store = store
        self.policy = policy
        self.pseudonym_key = pseudonym_key
        self.publication = publication
        self.publish_wait = publish_wait  # bounds the wait while the broker is away
        self.writer: GroupCommitWriter[RecordConsent, list[ConsentEntry] | None] = GroupCommitWriter(
            lambda commands: handlers.record_many(store, policy, commands, utcnow()),
            lambda command: handlers.record_consent(store, policy, command, utcnow()),
        )

    async def record(self, command: RecordConsent) -> Recorded | None:
        """Record a choice (InvalidConsentError names the bad field); None for a duplicate request id.

        Needs `run_writer()` running: concurrent choices are committed together.
        """
        self.policy.validate(command, utcnow())
        entries = await self.writer.submit(command)
        if entries is None:
            return None
        return Recorded(entries, self._committed(entries))

    async def wait_published(self, recorded: Recorded) -> bool:
        """Wait until the choice is on the broker, at most `publish_wait`; whether it is.

        A request answers once its change is on the broker, so that every join the segmenter
        decides after the answer sees it (the admission barrier reads the consent topic first)."""
        started = time.monotonic()
        published = await self.publication.published(recorded.ticket, self.publish_wait)
        if published:
            metrics.PUBLISH_WAIT_SECONDS.observe(time.monotonic() - started)
        return published

    async def run_writer(self) -> None:
        await self.writer.run()

    async def states(self, customer_id: str) -> dict[str, PurposeState]:
        current = await asyncio.to_thread(self.store.current, customer_id)
        return self.policy.states(current, utcnow())

    async def history(self, customer_id: str) -> list[dict[str, Any]]:
        return await asyncio.to_thread(self.store.history, customer_id)

    async def expire_lapsed(self, batch: int = 500) -> int:
        """Deny every grant past its expiry; returns how many grants expired."""
        now = utcnow()
        due = await asyncio.to_thread(self.store.customers_with_lapsed_grants, now, batch)
        expired = 0
        for customer_id in due:
            entries = await asyncio.to_thread(
                handlers.expire_customer, self.store, self.policy, customer_id, now
            )
            self._committed(entries)
            expired += len(entries)
        metrics.EXPIRED.inc(expired)
        return expired

    async def retire_history(self, batch: int = 500) -> tuple[int, Counter[str]]:
        """Pseudonymize history rows past their purpose's retention (the rows in force stay);
        returns how many customers had rows retired, and the rows retired per purpose."""
        now = utcnow()
        cutoffs = handlers.retention_cutoffs(self.policy, now)
        due = await asyncio.to_thread(self.store.customers_with_history_past, cutoffs, batch)
        rows: Counter[str] = Counter()
        for customer_id in due:
            retired = await asyncio.to_thread(
                handlers.retire_history,
                self.store,
                self.policy,
                customer_id,
                self.pseudonym(customer_id),
                now,
            )
            for purpose, count in retired.items():
                metrics.HISTORY_RETIRED.labels(purpose).inc(count)
            rows.update(retired)
        return len(due), rows

    async def erase(self, customer_id: str) -> ErasureRequested:
        subject = self.pseudonym(customer_id)
        request, entries = await asyncio.to_thread(
            handlers.erase_customer, self.store, self.policy, customer_id, subject, utcnow()
        )
        self._committed(entries)  # 202: the erasure receipt tells when every part is done
        metrics.ERASURES.inc()
        log.info("erased a customer's consent records", extra={"subject": subject})
        return request

    async def state_page(self, after: str, limit: int) -> list[tuple[str, bytes]]:
        """A page of (customer id, consent.state value), for the relay's republish."""
        now = utcnow()
        ids = await asyncio.to_thread(self.store.customer_ids, after, limit)
        return [
            (
                customer_id,
                await asyncio.to_thread(handlers.snapshot_bytes, self.store, self.policy, customer_id, now),
            )
            for customer_id in ids
        ]

    def pseudonym(self, customer_id: str) -> str:
        return pseudonymize(self.pseudonym_key, customer_id)

    def _committed(self, entries: list[ConsentEntry]) -> int:
        """Count the commit and hand it to the relay; its publication ticket."""
        # Committed, not yet published: a crash here leaves the change to the outbox alone.
        failpoint("consent.after_commit")
        for entry in entries:
            metrics.CHANGES.labels(
                entry.purpose, entry.status, entry.reason, str(entry.publishes).lower()
            ).inc()
        return self.publication.committed()
