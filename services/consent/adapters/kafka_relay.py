"""`KafkaOutboxRelay`: publishes committed outbox rows, in order, and republishes consent.state."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from kafka.errors import KafkaError as AdminKafkaError
from sqlalchemy.exc import SQLAlchemyError

from services.consent import metrics
from services.consent.adapters.sql_lease import SqlRelayLease
from services.consent.adapters.sql_outbox import OutboxRow, SqlOutbox
from shared import topics
from shared.events import utcnow
from shared.failpoints import failpoint
from shared.metrics import MESSAGES_PUBLISHED
from shared.supervise import within
from shared.topics import TopicNames

log = logging.getLogger(__name__)

StatePage = Callable[[str, int], Awaitable[list[tuple[str, bytes]]]]
EnsureTopics = Callable[[], Awaitable[object]]
PRUNE_EVERY = timedelta(minutes=1)
# How often a replica without the lease looks whether the leader published its rows.
FOLLOW_POLL_SECONDS = 0.02
# A store outage is retried the same way: the rows wait in the outbox either way.
RETRYABLE = (KafkaError, AdminKafkaError, OSError, TimeoutError, SQLAlchemyError)


class KafkaOutboxRelay:
    """Woken right after each commit; polls only as a fallback (rows left by a crash, lost wake-ups).

    At start, and after every failure (the broker may have restarted and forgotten its topics), it
    re-creates the topics, drains the outbox, then republishes every customer's consent.state.

    It also tells the API when a commit is on the broker (`published`), so a PUT answers only once
    its change can be read: every commit gets a ticket, and a drain that found the outbox empty
    after the ticket was drawn has published it. A replica without the lease watches the outbox
    for the rows the leader publishes for it.
    """

    def __init__(
        self,
        outbox: SqlOutbox,
        lease: SqlRelayLease,
        names: TopicNames,
        state_page: StatePage,
        ensure_topics: EnsureTopics,
        poll_interval: float = 2.0,
        peer_poll_interval: float | None = None,
        batch_size: int = 500,
        retention: timedelta = timedelta(hours=1),
    ) -> None:
        self.outbox = outbox
        self.lease = lease
        self.names = names
        self.state_page = state_page
        self.ensure_topics = ensure_topics
        self.poll_interval = poll_interval
        # With replicas (PostgreSQL), the leader also looks this often for rows the others
        # committed: their commits cannot wake it, and their PUTs wait for its publication.
        self.peer_poll_interval = peer_poll_interval
        self.batch_size = batch_size
        self.retention = retention
        self._wake = asyncio.Event()
        self._pruned_at = utcnow()
        self._committed = 0  # tickets drawn: commits of this process
        self._published_through = 0  # every commit up to this ticket is on the broker
        self._progress = asyncio.Condition()

    def committed(self) -> int:
        """Called after a commit, from the event loop thread: wakes the relay; the commit's ticket."""
        self._committed += 1
        self._wake.set()
        return self._committed

    async def published(self, ticket: int, timeout: float) -> bool:
        """Whether the commit of `ticket` (and every earlier one) was published within `timeout`."""
        async with self._progress:
            try:
                await within(timeout, self._progress.wait_for(lambda: self._published_through >= ticket))
            except TimeoutError:
                metrics.PUBLISH_WAIT_TIMEOUTS.inc()
                return False
        return True

    async def run(self, producer: AIOKafkaProducer) -> None:
        resync = True
        while True:
            try:
                if not await asyncio.to_thread(self.lease.hold):
                    # Another replica relays; when it stops, this one takes over and resyncs.
                    resync = True
                    await self._follow()
                    continue
                if resync:
                    await self.ensure_topics()
                await self.drain(producer)
                if self.outbox.log_holds_erased:  # no thread hop on the rounds without an erasure
                    await asyncio.to_thread(self.outbox.scrub_log)
                if resync:
                    await self.republish_state(producer)
                    resync = False
                await self._prune()
                woken = await self._sleep_until_woken(peers=True)
                # A broker that restarted empty (the embedded one keeps nothing) is found here.
                resync = not woken and not await self._topics_present(producer)
            except RETRYABLE:
                # The supervisor logs it and runs the relay again after a backoff, and a new run
                # starts with a resync (the broker may have restarted and forgotten its topics).
                metrics.PUBLISH_ERRORS.inc()
                raise

    async def drain(self, producer: AIOKafkaProducer) -> int:
        """Publish pending rows until none is left; returns how many were published."""
        published = 0
        while True:
            self._wake.clear()
            # Every commit with a ticket up to `drawn` is visible to the read that follows.
            drawn = self._committed
            rows = await asyncio.to_thread(self.outbox.pending, self.batch_size)
            if not rows:
                await self._advance(drawn)
                return published
            failpoint("consent.relay_publish")
            await self._publish(producer, [(r.topic, r.customer_id, r.payload) for r in rows])
            await asyncio.to_thread(self.outbox.mark_sent, rows, utcnow())
            published += len(rows)
            _count(rows, self.names)
            if len(rows) < self.batch_size:
                # The read was not cut by the limit: every row visible to it is out, so every
                # commit up to `drawn` is, without waiting for an empty read (which commits
                # arriving meanwhile could put off).
                await self._advance(drawn)

    async def republish_state(self, producer: AIOKafkaProducer) -> int:
        """Every customer's current state to consent.state: idempotent for last-value-per-key readers."""
        after, total = "", 0
        while page := await self.state_page(after, self.batch_size):
            await self._publish(producer, [(topics.CONSENT_STATE.base, key, value) for key, value in page])
            after, total = page[-1][0], total + len(page)
        metrics.STATE_REPUBLISHED.inc(total)
        MESSAGES_PUBLISHED.labels(self.names.name(topics.CONSENT_STATE)).inc(total)
        log.info("republished consent.state", extra={"customers": total})
        return total

    async def _publish(
        self, producer: AIOKafkaProducer, records: list[tuple[str, str, bytes | None]]
    ) -> None:
        # Sends are queued in order and awaited together: one producer keeps per-partition order.
        futures = [
            await producer.send(self.names.prefix + topic, value, key=key.encode())
            for topic, key, value in records
        ]
        results = await asyncio.gather(*futures, return_exceptions=True)
        failure = next((r for r in results if isinstance(r, BaseException)), None)
        if failure is not None:
            raise failure

    async def _follow(self) -> None:
        """Without the lease: once woken by a commit (or after the poll interval), wait for the
        leader to publish the rows committed so far, polling the outbox, for one poll interval."""
        await self._sleep_until_woken()
        self._wake.clear()
        drawn = self._committed
        if drawn <= self._published_through:
            return
        last = await asyncio.to_thread(self.outbox.last_id)
        deadline = asyncio.get_running_loop().time() + self.poll_interval
        while await asyncio.to_thread(self.outbox.unsent_through, last):
            if asyncio.get_running_loop().time() > deadline:
                return  # the leader may be away: try for the lease again
            await asyncio.sleep(FOLLOW_POLL_SECONDS)
        await self._advance(drawn)

    async def _advance(self, drawn: int) -> None:
        async with self._progress:
            if drawn > self._published_through:
                self._published_through = drawn
                self._progress.notify_all()

    async def _prune(self) -> None:
        now = utcnow()
        # Pruning is a write (an fsync on SQLite), so not on every wake-up under load.
        if now - self._pruned_at > PRUNE_EVERY:
            await asyncio.to_thread(self.outbox.prune_sent, now - self.retention)
            self._pruned_at = now

    async def _sleep_until_woken(self, peers: bool = False) -> bool:
        """True when a commit woke the relay (with `peers`, also when rows other replicas committed
        wait), False after the fallback poll interval."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.poll_interval
        step = self.peer_poll_interval if peers and self.peer_poll_interval else self.poll_interval
        while (left := deadline - loop.time()) > 0:
            try:
                await within(min(step, left), self._wake.wait())
            except TimeoutError:
                if peers and self.peer_poll_interval and await asyncio.to_thread(self.outbox.has_unsent):
                    return True
                continue
            return True
        return False

    async def _topics_present(self, producer: AIOKafkaProducer) -> bool:
        cluster = await producer.client.fetch_all_metadata()
        wanted = {self.names.name(spec) for spec in (topics.CONSENT_CHANGES, topics.CONSENT_STATE)}
        return wanted <= set(cluster.topics())


async def sample_outbox_once(outbox: SqlOutbox) -> None:
    """Set the outbox gauges; run periodically, also while the broker is away and the relay cannot."""
    stats = await asyncio.to_thread(outbox.stats)
    metrics.OUTBOX_PENDING.set(stats.pending)
    age = (utcnow() - stats.oldest_created_at).total_seconds() if stats.oldest_created_at else 0.0
    metrics.OUTBOX_OLDEST_AGE.set(max(0.0, age))


def _count(rows: list[OutboxRow], names: TopicNames) -> None:
    for row in rows:
        MESSAGES_PUBLISHED.labels(names.prefix + row.topic).inc()
