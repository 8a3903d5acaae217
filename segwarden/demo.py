"""`segwarden demo`: synthetic customers, events and consent changes against a running stack.

Shows live segment sizes and the eviction latency a customer sees: from the consent PUT that
withdraws to the `left` record on `segment.membership`.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import time
from dataclasses import dataclass, field

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from rich.live import Live
from rich.table import Table

from shared.auth import internal_token
from shared.events import CustomerEvent, MembershipChanged, new_event_id, utcnow
from shared.kafka import kafka_security, topic_names
from shared.settings import ServiceSettings
from shared.topics import CUSTOMER_EVENTS, SEGMENT_MEMBERSHIP

DEMO_SEGMENTS = {
    "demo-big-spenders": ("total_spend >= 200", ["marketing_email"]),
    "demo-eu-shoppers": (
        "purchase_count >= 1 and profile.country in ['DE', 'FR', 'NL']",
        ["marketing_email"],
    ),
    "demo-sms-loyal": ("event_count >= 3 and profile.tier == 'gold'", ["marketing_sms"]),
}
COUNTRIES = ["DE", "FR", "NL", "US", "GB"]
TIERS = ["gold", "silver", "bronze"]


@dataclass
class DemoState:
    withdrawn_at: dict[tuple[str, str], float] = field(default_factory=dict)
    latencies_ms: list[float] = field(default_factory=list)
    joined: int = 0
    left: int = 0
    sizes: dict[str, int] = field(default_factory=dict)

    def percentile(self, q: float) -> str:
        if len(self.latencies_ms) < 2:
            return "-"
        return f"{statistics.quantiles(self.latencies_ms, n=100)[int(q) - 1]:.1f} ms"


def render(state: DemoState, elapsed: float) -> Table:
    table = Table(title=f"segwarden demo — {elapsed:.0f}s")
    table.add_column("segment")
    table.add_column("members", justify="right")
    for segment in DEMO_SEGMENTS:
        table.add_row(segment, str(state.sizes.get(segment, "?")))
    table.add_section()
    table.add_row("joined / left events", f"{state.joined} / {state.left}")
    table.add_row("evictions measured", str(len(state.latencies_ms)))
    table.add_row("eviction latency p50", state.percentile(50))
    table.add_row("eviction latency p99", state.percentile(99))
    return table


async def define_segments(client: httpx.AsyncClient, segmenter: str) -> None:
    for segment_id, (rule, purposes) in DEMO_SEGMENTS.items():
        body = {"name": segment_id, "rule": rule, "required_purposes": purposes, "description": "demo"}
        response = await client.put(f"{segmenter}/v1/segments/{segment_id}", json=body)
        response.raise_for_status()


async def set_consent(
    client: httpx.AsyncClient, consent: str, customer: str, purpose: str, status: str
) -> None:
    body = {"status": status, "source": "demo", "jurisdiction": "GDPR", "policy_version": "demo-1"}
    response = await client.put(f"{consent}/v1/customers/{customer}/consents/{purpose}", json=body)
    response.raise_for_status()


def synthetic_event(customer: str, rng: random.Random) -> CustomerEvent:
    kind = rng.choice(["purchase", "purchase", "page.view", "profile_update"])
    if kind == "purchase":
        attributes = {"amount": round(rng.uniform(5, 150), 2), "currency": "EUR"}
    elif kind == "profile_update":
        attributes = {"country": rng.choice(COUNTRIES), "tier": rng.choice(TIERS)}
    else:
        attributes = {}
    return CustomerEvent(
        event_id=new_event_id(),
        customer_id=customer,
        type=kind,
        occurred_at=utcnow(),
        source="segwarden-demo",
        attributes=attributes,
    )


async def watch_membership(consumer: AIOKafkaConsumer, state: DemoState) -> None:
    async for record in consumer:
        change = MembershipChanged.model_validate_json(record.value)
        if change.action == "joined":
            state.joined += 1
            continue
        state.left += 1
        if change.reason != "consent_withdrawn" or change.segment_id not in DEMO_SEGMENTS:
            continue
        # Each demo segment needs one purpose: the withdrawal of that purpose caused this left.
        purpose = DEMO_SEGMENTS[change.segment_id][1][0]
        started = state.withdrawn_at.pop((change.customer_id, purpose), None)
        if started is not None:
            state.latencies_ms.append((time.perf_counter() - started) * 1000)


async def run_demo(customers: int, duration: float, seed: int) -> None:
    settings = ServiceSettings()
    names = topic_names(settings)
    rng = random.Random(seed)
    headers = {"Authorization": f"Bearer {internal_token(settings)}"}
    ids = [f"demo-{seed}-{n}" for n in range(customers)]
    state = DemoState()
    async with httpx.AsyncClient(headers=headers, timeout=10) as client:
        await define_segments(client, settings.segmenter_url)
        security = kafka_security(settings)
        producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers, linger_ms=5, **security)
        consumer = AIOKafkaConsumer(
            names.name(SEGMENT_MEMBERSHIP),
            bootstrap_servers=settings.bootstrap_servers,
            auto_offset_reset="latest",
            fetch_max_wait_ms=settings.kafka_fetch_max_wait_ms,
            **security,
        )
        await producer.start()
        await consumer.start()
        watcher = asyncio.create_task(watch_membership(consumer, state))
        try:
            for customer in ids:
                for purpose in ("marketing_email", "marketing_sms"):
                    await set_consent(client, settings.consent_url, customer, purpose, "granted")
            await drive(client, producer, settings, ids, rng, state, duration)
        finally:
            watcher.cancel()
            await consumer.stop()
            await producer.stop()


async def drive(client, producer, settings, ids, rng, state: DemoState, duration: float) -> None:
    names = topic_names(settings)
    started = time.monotonic()
    with Live(render(state, 0), refresh_per_second=2) as live:
        while (elapsed := time.monotonic() - started) < duration:
            for _ in range(20):
                event = synthetic_event(rng.choice(ids), rng)
                await producer.send(
                    names.name(CUSTOMER_EVENTS), event.to_bytes(), key=event.customer_id.encode()
                )
            customer, purpose = rng.choice(ids), rng.choice(["marketing_email", "marketing_sms"])
            status = rng.choice(["granted", "denied"])
            if status == "denied":
                state.withdrawn_at[(customer, purpose)] = time.perf_counter()
            else:
                state.withdrawn_at.pop((customer, purpose), None)
            await set_consent(client, settings.consent_url, customer, purpose, status)
            for segment in DEMO_SEGMENTS:
                response = await client.get(f"{settings.segmenter_url}/v1/segments/{segment}/stats")
                if response.status_code == 200:
                    state.sizes[segment] = response.json().get("size", 0)
            live.update(render(state, elapsed))
            await asyncio.sleep(0.25)
