"""A seeded workload: a few dozen customers, their events and consent choices, in two phases so a
fault can land between them (or fire inside them). The same seed gives the same inputs."""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx
from kafka import KafkaProducer

from shared.events import CustomerEvent, utcnow
from tests.faults.model import Features, Model
from tests.faults.stack import ADMIN, FaultStack
from tests.support import http_client

DEFAULT_SEED = 1010
PURPOSES = ("marketing_email", "marketing_sms", "personalization")
GRANT_ODDS = {"marketing_email": 0.7, "marketing_sms": 0.5, "personalization": 0.5}


def seed() -> int:
    return int(os.environ.get("FAULT_SEED", DEFAULT_SEED))


@dataclass(frozen=True)
class Step:
    customer: str
    purpose: str | None = None  # a consent choice when set
    status: str = ""
    event_id: str = ""  # else an event (a repeated id is a redelivery)
    amount: float | None = None  # a purchase when set


@dataclass
class Counts:
    consent_puts: int = 0
    events: int = 0
    redeliveries: int = 0
    bursts: int = 0
    unpublished_answers: int = 0  # choices answered before they were published (broker away)


def plan(rng: random.Random, customers: list[str]) -> tuple[list[Step], list[Step]]:
    """Phase 1 grants and buys; phase 2 withdraws some grants, re-grants a few, buys more."""
    first: dict[str, list[Step]] = {}
    second: dict[str, list[Step]] = {}
    for customer in customers:
        granted = [p for p in PURPOSES if rng.random() < GRANT_ODDS[p]]
        sent: list[Step] = []
        first[customer] = [Step(customer, p, "granted") for p in granted] + _events(rng, customer, 2, 5, sent)
        denied = [p for p in granted if rng.random() < 0.6]
        again = [p for p in denied if rng.random() < 0.3]
        steps = _events(rng, customer, 1, 3, sent) + [Step(customer, p, "denied") for p in denied]
        steps += [Step(customer, p, "granted") for p in again]
        second[customer] = steps
    return _interleave(rng, first), _interleave(rng, second)


def _events(rng: random.Random, customer: str, low: int, high: int, sent: list[Step]) -> list[Step]:
    steps = []
    for _ in range(rng.randint(low, high)):
        if sent and rng.random() < 0.15:
            # A producer's retry: the customer's previous event again, same event_id and payload
            # (the contract makes event ids unique; only a repeat of the previous one is a duplicate).
            steps.append(sent[-1])
            continue
        amount = float(rng.randrange(20, 120)) if rng.random() < 0.6 else None
        step = Step(customer, event_id=f"{customer}-e{len(sent)}-{rng.randrange(10**6)}", amount=amount)
        sent.append(step)
        steps.append(step)
    return steps


def _interleave(rng: random.Random, per_customer: dict[str, list[Step]]) -> list[Step]:
    """A random merge that keeps each customer's own order."""
    queues = {c: list(steps) for c, steps in per_customer.items() if steps}
    merged = []
    while queues:
        customer = rng.choice(sorted(queues))
        merged.append(queues[customer].pop(0))
        if not queues[customer]:
            del queues[customer]
    return merged


@dataclass
class Workload:
    """Drives the stack's public inputs (consent HTTP API, customer.events) and remembers what it sent."""

    stack: FaultStack
    seed: int
    size: int = 30
    counts: Counts = field(default_factory=Counts)
    model: Model = field(default_factory=Model)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.customers = [f"f{self.seed}-{i:02d}" for i in range(self.size)]
        self.phases = plan(self.rng, self.customers)
        self._event_ids: set[str] = set()
        self._producer: KafkaProducer | None = None
        self._pool = ThreadPoolExecutor(16)
        self._turn = 0
        self.pause: Callable[[], object] = lambda: None  # waits until the stack has caught up

    def run_phase(self, index: int, midway: Callable[[], None] | None = None) -> None:
        """Send one phase; `midway` runs (in the caller's thread) when half of it is sent."""
        steps = self.phases[index]
        chunks: list[list[Step] | None] = list(_chunks(steps))
        if index == 1:
            # Phase 2's events first, then (once they are processed) its choices: an event sent
            # just before a denial races it into the segmenter, which the burst scenario tests on
            # purpose and would make every other scenario depend on timing until admission waits.
            events = list(_chunks([s for s in steps if s.purpose is None]))
            chunks = [*events, None, *_chunks([s for s in steps if s.purpose is not None])]
        for n, chunk in enumerate(chunks):
            if midway is not None and n == len(chunks) // 2:
                midway()
            if chunk is None:
                self.pause()
                continue
            self._produce([s for s in chunk if s.purpose is None])
            list(self._pool.map(self._put, [s for s in chunk if s.purpose is not None]))
            self.producer.flush(30)
        self.stack.faults.add(f"workload phase {index + 1} sent", fault=False)

    def run(
        self,
        between: Callable[[], None] = lambda: None,
        midway: tuple[Callable[[], None] | None, Callable[[], None] | None] = (None, None),
    ) -> None:
        """Phase 1, `between`, phase 2; `midway` actions run half-way through each phase."""
        self.run_phase(0, midway[0])
        between()
        self.run_phase(1, midway[1])

    def burst(self, customers: list[str], purpose: str, choices: int) -> None:
        """Alternating grants and denials for each customer at once (they share group commits),
        ending on a denial when `choices` is even."""
        steps = [
            Step(c, purpose, "granted" if n % 2 == 0 else "denied") for n in range(choices) for c in customers
        ]
        list(self._pool.map(self._put, steps))
        self.counts.bursts += 1

    @property
    def producer(self) -> KafkaProducer:
        if self._producer is None:
            # Not idempotent: after the embedded broker restarts empty, kafka-python's
            # InitProducerId fails and an idempotent producer aborts every batch for good.
            self._producer = KafkaProducer(
                bootstrap_servers=self.stack.broker.bootstrap, linger_ms=5, enable_idempotence=False
            )
        return self._producer

    def reconnect(self) -> None:
        """A new producer, as an upstream app would make after its broker came back empty."""
        if self._producer is not None:
            self._producer.close(5)
        self._producer = None

    def _produce(self, steps: list[Step]) -> None:
        """Send the events and wait for each acknowledgement: the workload never loses an input
        without failing, or the model would expect what was never sent."""
        topic = f"{self.stack.prefix}customer.events"
        sent = []
        for step in steps:
            event = CustomerEvent(
                event_id=step.event_id,
                customer_id=step.customer,
                type="purchase" if step.amount is not None else "page_view",
                occurred_at=utcnow(),
                source="faults",
                attributes={"amount": step.amount, "currency": "EUR"} if step.amount is not None else {},
            )
            sent.append((step, self.producer.send(topic, event.to_bytes(), key=step.customer.encode())))
        for step, future in sent:
            future.get(timeout=30)
            self._account(step)

    def _account(self, step: Step) -> None:
        self.counts.events += 1
        if step.event_id in self._event_ids:
            self.counts.redeliveries += 1
            return
        self._event_ids.add(step.event_id)
        features = self.model.features.setdefault(step.customer, Features())
        features.events += 1
        if step.amount is not None:
            features.spend += step.amount
            features.purchases += 1

    def _put(self, step: Step) -> None:
        """PUT the choice; a consent worker that is down (a fault) is retried, on the next one."""
        body = {
            "status": step.status,
            "source": "faults",
            "jurisdiction": "GDPR",
            "policy_version": "2026-03",
        }
        deadline = time.monotonic() + 60
        while True:
            self._turn += 1
            worker = self.stack.consents[self._turn % len(self.stack.consents)]
            sent = utcnow()
            try:
                response = http_client.put(
                    f"{worker.url}/v1/customers/{step.customer}/consents/{step.purpose}",
                    json=body,
                    headers=ADMIN,
                    timeout=10,
                )
                if response.status_code == 200:
                    self.counts.consent_puts += 1
                    self._acknowledge(response.json(), sent)
                    return
                error = f"{response.status_code} {response.text[:200]}"
            except httpx.HTTPError as exc:
                error = repr(exc)
            assert time.monotonic() < deadline, f"consent PUT kept failing: {error}"
            time.sleep(0.2)

    def _acknowledge(self, body: dict[str, Any], sent: datetime) -> None:
        """Note when each row was sent and answered (its commit lies in between), and when the API
        answered each row it had published (an answer before publication, while the broker is
        away, promises nothing yet)."""
        answered = utcnow()
        rows = [body, *body["also_recorded"]]
        for row in rows:
            self.model.windows[row["event_id"]] = (sent, answered)
        if body["pending_publication"]:
            self.counts.unpublished_answers += 1
            return
        for row in rows:
            self.model.acknowledged[row["event_id"]] = answered

    def close(self) -> None:
        self._pool.shutdown()
        if self._producer is not None:
            self._producer.close(5)


def _chunks(steps: list[Step], size: int = 12) -> Iterator[list[Step]]:
    """Runs of steps with at most one consent choice per customer, so a customer's choices keep
    their order (concurrency across customers only; the burst scenario is the exception)."""
    chunk: list[Step] = []
    choosing: set[str] = set()
    for step in steps:
        if len(chunk) >= size or (step.purpose and step.customer in choosing):
            yield chunk
            chunk, choosing = [], set()
        chunk.append(step)
        if step.purpose:
            choosing.add(step.customer)
    if chunk:
        yield chunk
