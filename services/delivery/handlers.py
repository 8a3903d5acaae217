"""Use cases: route an input to the destinations' outbox, and send the outbox as signed webhooks."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, Protocol

from services.delivery import metrics
from services.delivery.domain.breaker import STATE_VALUES, CircuitBreaker
from services.delivery.domain.destinations import Destination, agreement_problem
from services.delivery.domain.routing import Cause, Consent, Intent, merge_consent, newest_changes
from services.delivery.domain.webhooks import (
    CIRCUIT_OPEN,
    GONE,
    SIGNATURE_HEADER,
    body,
    retry_delay,
    signature,
)
from shared.events import ConsentChanged, ConsentStateSnapshot, MembershipChanged
from shared.failpoints import failpoint
from shared.supervise import cancel_until_done, uninterrupted, within

log = logging.getLogger(__name__)
Update = Callable[[set[str], Consent], tuple[set[str], Consent]]


class RoutingStore(Protocol):
    def route(self, customer_id: str, update: Update, cause: Cause, today: date, at: str) -> list[Intent]: ...


class Outbox(Protocol):
    def claim_due(self, now: float, limit: int, lease_until: float) -> list[dict[str, Any]]: ...
    def next_due(self) -> float | None: ...
    def get_destination(self, destination_id: str) -> Destination | None: ...
    def settle(self, seq: int, status: str, attempts: int, error: str | None, now: float) -> None: ...
    def retry_at(self, seq: int, attempts: int, when: float, error: str) -> None: ...
    def pause(self, destination_id: str, reason: str, now: float) -> bool: ...
    def release_deferred(self, destination_ids: list[str], now: float) -> None: ...


class DestinationStore(Protocol):
    def list_destinations(self) -> list[Destination]: ...
    def paused_ids(self) -> set[str]: ...


class WebhookSender(Protocol):
    async def post(self, url: str, payload: bytes, headers: dict[str, str]) -> str | None:
        """None when the receiver acknowledged (2xx), else why not."""


def membership_update(change: MembershipChanged) -> tuple[Update, Cause]:
    def update(members: set[str], consent: Consent) -> tuple[set[str], Consent]:
        if change.action == "joined":
            return members | {change.segment_id}, consent
        return members - {change.segment_id}, consent

    cause = Cause(change.event_id, "membership", change.reason, change.at.timestamp(), change.cause_event_id)
    return update, cause


def consent_change_update(change: ConsentChanged, now: datetime) -> tuple[Update, Cause]:
    if change.reason == "erasure":
        # The consent service withdraws every granted purpose first: that is the erasure arriving.
        return erased_update(change.event_id, change.recorded_at.timestamp())
    live = change.status == "granted" and (change.expires_at is None or change.expires_at > now)
    incoming: Consent = {change.purpose: (live, change.sequence)}
    carried = () if change.sequence is None else ((change.purpose, change.sequence),)
    return lambda members, consent: (members, merge_consent(consent, incoming)), Cause(
        change.event_id, "consent", change.reason, change.recorded_at.timestamp(), consent_changes=carried
    )


def consent_state_update(snapshot: ConsentStateSnapshot) -> tuple[Update, Cause]:
    incoming: Consent = {p: (s.effective, s.sequence) for p, s in snapshot.purposes.items()}
    return lambda members, consent: (members, merge_consent(consent, incoming)), Cause(
        snapshot.event_id,
        "consent",
        "state",
        snapshot.updated_at.timestamp(),
        consent_changes=newest_changes(incoming),
    )


def erased_update(event_id: str, at: float | None) -> tuple[Update, Cause]:
    """An erasure request, or the `consent.state` tombstone it leaves: every destination gets a
    `left` (reason `erased`), and the store forgets the customer's segments and consent."""
    return lambda members, consent: (set(), {}), Cause(event_id, "erasure", "erased", at)


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int
    initial_s: float
    cap_s: float
    lease_s: float  # a claimed webhook is not due again for this long (longer than one POST may take)
    breaker_failures: int  # consecutive failures of an endpoint that open its circuit
    breaker_cooldown_s: float  # how long an open circuit holds everything back before a probe


class Dispatcher:
    """Sends the outbox: the oldest pending webhook per destination and customer, retried with
    backoff, a dead-letter record after the last attempt. Each webhook is its own task, so an
    endpoint that hangs until the timeout holds up only its own destination and customer."""

    def __init__(
        self,
        outbox: Outbox,
        sender: WebhookSender,
        policy: RetryPolicy,
        concurrency: int,
        settled: Callable[[], None],
        paused: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.outbox, self.sender, self.policy = outbox, sender, policy
        self.concurrency, self.settled, self.paused, self.clock = concurrency, settled, paused, clock
        self.rng = random.Random()
        self._wake = asyncio.Event()
        # In memory: a restart closes every circuit, and the first failures open it again.
        self.breakers: dict[str, CircuitBreaker] = {}
        self._users: dict[str, set[str]] = {}  # endpoint -> destinations seen sending to it

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        in_flight: set[asyncio.Task[None]] = set()
        try:
            while True:
                self._wake.clear()
                for task in [t for t in in_flight if t.done()]:
                    in_flight.discard(task)
                    # A failed attempt (the store away) fails the run; the supervisor restarts it.
                    task.result()
                await self._start_due(in_flight)
                upcoming = await asyncio.to_thread(self.outbox.next_due)
                wait = None if upcoming is None else max(0.0, upcoming - self.clock())
                if wait is None or wait > 0:
                    with contextlib.suppress(TimeoutError):
                        await within(wait, self._wake.wait())
        finally:
            if in_flight:
                await uninterrupted(self._let_end(in_flight))

    async def _let_end(self, in_flight: set[asyncio.Task[None]]) -> None:
        """A stop lets the attempts in flight end and record what their receiver said, so that a
        restart does not send them again; each POST ends within the timeout, so this waits at
        most the lease, then cancels what is left (a store that hangs) and waits for that too,
        so no attempt is still running when the store closes."""
        log.info("stopping: waiting for the webhooks in flight", extra={"in_flight": len(in_flight)})
        await asyncio.wait(in_flight, timeout=self.policy.lease_s)
        await cancel_until_done(list(in_flight))  # the ended ones too: their outcome is retrieved

    async def _start_due(self, in_flight: set[asyncio.Task[None]]) -> None:
        """Claim what is due (a lease, so it is not due again while in flight) and start it."""
        free = self.concurrency - len(in_flight)
        if free <= 0:
            return
        now = self.clock()
        due = await asyncio.to_thread(self.outbox.claim_due, now, free, now + self.policy.lease_s)
        for item in due:
            task = asyncio.create_task(self.attempt(item))
            task.add_done_callback(lambda _: self._wake.set())
            in_flight.add(task)

    def breaker(self, endpoint: str) -> CircuitBreaker:
        return self.breakers.setdefault(
            endpoint, CircuitBreaker(self.policy.breaker_failures, self.policy.breaker_cooldown_s)
        )

    async def attempt(self, item: dict[str, Any]) -> None:
        destination = await asyncio.to_thread(self.outbox.get_destination, item["destination_id"])
        problem = "deleted" if destination is None else agreement_problem(destination.agreement, _today())
        if destination is None or problem is not None:
            await self._finish(item, "withheld", item["attempts"], problem)
            return
        self._users.setdefault(destination.endpoint, set()).add(destination.destination_id)
        breaker = self.breaker(destination.endpoint)
        if not breaker.allow(self.clock()):
            # Held back, not attempted: it goes when the circuit closes, or as the next probe.
            await asyncio.to_thread(
                self.outbox.retry_at, item["seq"], item["attempts"], breaker.reopens_at(), CIRCUIT_OPEN
            )
            return
        probe = breaker.state == "half_open"
        self._show(destination.endpoint)
        error = await self._post(item, destination)
        await self._settle(item, destination, error, probe)

    async def _post(self, item: dict[str, Any], destination: Destination) -> str | None:
        # The subject was fixed when it was enqueued: after an erasure the row holds no id.
        payload = body(item, destination, item["subject"])
        headers = {
            "Content-Type": "application/json",
            "Idempotency-Key": item["idempotency_key"],
            SIGNATURE_HEADER: signature(destination.signing_secret, int(self.clock()), payload),
        }
        return await self.sender.post(destination.endpoint, payload, headers)

    async def _settle(
        self, item: dict[str, Any], destination: Destination, error: str | None, probe: bool
    ) -> None:
        breaker = self.breaker(destination.endpoint)
        # A failed probe says the endpoint is still down, nothing about this webhook: it does not
        # count against the attempts, so an outage of any length dead-letters nothing.
        attempts = item["attempts"] + (0 if probe and error not in (None, GONE) else 1)
        # An endpoint that answered, even 410, is up; what its circuit held back goes after this one.
        answered = error is None or error == GONE
        closed = breaker.succeeded() if answered else False
        if not answered:
            breaker.failed(self.clock())
        self._show(destination.endpoint)
        await self._record(item, destination, error, attempts)
        if closed:
            await self._release(destination.endpoint)

    async def _record(
        self, item: dict[str, Any], destination: Destination, error: str | None, attempts: int
    ) -> None:
        label = destination.destination_id
        if error is None:
            failpoint("delivery.after_ack")  # acknowledged, not yet marked delivered
            metrics.DELIVERED.labels(label).inc()
            if item["changed_at"] is not None:
                metrics.LATENCY.labels(label).observe(max(0.0, self.clock() - item["changed_at"]))
            await self._finish(item, "delivered", attempts, None)
        elif error == GONE:
            # The receiver says this endpoint is gone for good: stop, keep what is pending, and
            # wait for an operator's PUT (a new endpoint, or the same one back) to resume.
            reason = f"the endpoint answered 410 Gone at {_now()}"
            if await asyncio.to_thread(self.outbox.pause, label, reason, self.clock()):
                metrics.PAUSED.labels(label).inc()
                self.paused()  # the gauges, and the change's way to the ledger
                log.warning(
                    "destination paused: its endpoint answered 410 Gone", extra={"destination": label}
                )
            await asyncio.to_thread(self.outbox.retry_at, item["seq"], attempts, self.clock(), error)
        elif attempts >= self.policy.max_attempts:
            metrics.FAILED.labels(label).inc()
            log.warning(
                "webhook dead-lettered", extra={"destination": label, "attempts": attempts, "error": error}
            )
            await self._finish(item, "dead", attempts, error)
        else:
            metrics.RETRIED.labels(label).inc()
            delay = retry_delay(attempts, self.policy.initial_s, self.policy.cap_s, self.rng)
            await asyncio.to_thread(self.outbox.retry_at, item["seq"], attempts, self.clock() + delay, error)

    async def _finish(self, item: dict[str, Any], status: str, attempts: int, error: str | None) -> None:
        await asyncio.to_thread(self.outbox.settle, item["seq"], status, attempts, error, self.clock())
        self.settled()

    async def _release(self, endpoint: str) -> None:
        """The circuit closed: what it held back is due now."""
        destination_ids = sorted(self._users.get(endpoint, ()))
        await asyncio.to_thread(self.outbox.release_deferred, destination_ids, self.clock())
        self.wake()

    def _show(self, endpoint: str) -> None:
        value = STATE_VALUES[self.breaker(endpoint).state]
        for destination_id in self._users.get(endpoint, ()):
            metrics.CIRCUIT_STATE.labels(destination_id).set(value)


class Pruner:
    """Deletes ended webhooks and relayed changes older than the retention, every interval."""

    def __init__(
        self,
        prune: Callable[[float], dict[str, int]],
        retention_s: float,
        interval_s: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.prune, self.retention_s, self.interval_s, self.clock = prune, retention_s, interval_s, clock

    async def run(self) -> None:
        while True:
            await self.once()
            await asyncio.sleep(self.interval_s)

    async def once(self) -> None:
        counts = await asyncio.to_thread(self.prune, self.clock() - self.retention_s)
        for kind, count in counts.items():
            metrics.PRUNED.labels(kind).inc(count)
        if any(counts.values()):
            log.info("delivery store pruned", extra=counts)


class DestinationGauges:
    """Keeps `segwarden_delivery_destination_paused` and `_suspended` true: refreshed when a
    destination changes (a PUT, a DELETE, a 410) and every minute, since an agreement's expiry
    or signing day suspends or resumes a destination with no event at all."""

    INTERVAL_S = 60.0

    def __init__(self, store: DestinationStore) -> None:
        self.store = store
        self._wake = asyncio.Event()
        self._shown: set[str] = set()

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        while True:
            self._wake.clear()
            await self.refresh()
            with contextlib.suppress(TimeoutError):
                await within(self.INTERVAL_S, self._wake.wait())

    async def refresh(self) -> None:
        destinations = await asyncio.to_thread(self.store.list_destinations)
        paused = await asyncio.to_thread(self.store.paused_ids)
        today = _today()
        current = {d.destination_id for d in destinations}
        for destination_id in self._shown - current:  # deleted: its series goes, not a stale 1
            metrics.PAUSED_NOW.remove(destination_id)
            metrics.SUSPENDED_NOW.remove(destination_id)
        for destination in destinations:
            label = destination.destination_id
            metrics.PAUSED_NOW.labels(label).set(int(label in paused))
            suspended = agreement_problem(destination.agreement, today) is not None
            metrics.SUSPENDED_NOW.labels(label).set(int(suspended))
        self._shown = current


def _today() -> date:
    return datetime.now(UTC).date()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
