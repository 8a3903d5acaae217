"""Segment-catalogue benchmark (`python -m bench.bench_segment_catalog`): what eviction, joins and a
segment PUT cost as the catalogue grows.

Starts its own embedded broker and segmenter (own topic prefix and Redis keys) and measures in
one run:
  1. the transport floor: two broker hops with nothing else (bench_segmenter's);
  2. segment PUT latency (request to answer) at 20, 200 and 1,000 segments that all require
     `marketing_email`, with a few thousand customers in Redis, each a member of some of them:
     PUT_SAMPLES redefinitions at each size, after the catalog grew to it;
  3. with the catalog at 1,000 segments: a customer whose profile matches the first k segments
     (k = 1, 20, 200, 1,000), consent granted, sends one event: joined-all latency is from that
     event's produce to its k-th `joined` read from segment.membership; then an opt-out: eviction
     latency is from its produce to the k-th `left` read (the same two hops as the floor).
Targets (docs/benchmarks.md): eviction within 3x the floor at every k; PUT p99 under 100 ms at
1,000 segments. Writes bench/results/segment_catalog.json.
"""

from __future__ import annotations

import asyncio
import random
import sys
import time
from collections import defaultdict
from pathlib import Path

import httpx
from aiokafka import AIOKafkaProducer

from bench.bench_segmenter import (
    PARTITIONS,
    TOKEN,
    consent_change,
    consumer,
    on_own_stack,
    processed,
    start_segmenter,
    summary,
    transport_floor,
)
from bench.common import metric_total, run_facts, write_results
from services.segmenter.settings import SegmenterSettings
from shared.events import CustomerEvent, MembershipChanged, new_event_id, utcnow
from shared.kafka import ensure_topics
from shared.topics import TopicPlan

CUSTOMERS = 3_000  # "a few thousand", each in 1 to BACKGROUND_LEVELS segments
BACKGROUND_LEVELS = 10
CATALOG_SIZES = (20, 200, 1_000)
IN_SEGMENTS = (1, 20, 200, 1_000)
PUT_SAMPLES = 20
EVICTION_SAMPLES = 8
WARMUP = 1


def segment_id(i: int) -> str:
    return f"cat-{i:04d}"


def segment_body(i: int) -> dict[str, object]:
    """Segment i holds the customers whose profile level is at least i: level k-1 is in k segments."""
    return {
        "name": segment_id(i),
        "rule": f"profile.level >= {i}",
        "required_purposes": ["marketing_email"],
    }


def profile_event(customer: str, level: int) -> CustomerEvent:
    return CustomerEvent(
        event_id=new_event_id(),
        customer_id=customer,
        type="profile_update",
        occurred_at=utcnow(),
        source="bench",
        attributes={"level": level},
    )


class MembershipCounter:
    """Counts each customer's `joined` and `left` read from segment.membership, and when the last came."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.consumer = consumer(bootstrap, topic)
        self.counts: dict[tuple[str, str], int] = defaultdict(int)
        self.last: dict[tuple[str, str], float] = {}
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.consumer.start()
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        while True:
            batches = await self.consumer.getmany(timeout_ms=1000)
            now = time.perf_counter()
            for records in batches.values():
                for record in records:
                    m = MembershipChanged.model_validate_json(record.value)
                    key = (m.customer_id, m.action)
                    self.counts[key] += 1
                    self.last[key] = now

    async def wait(self, customer: str, action: str, count: int, timeout: float = 300) -> float:
        """When the customer's `count`-th message of this action was read."""
        deadline = time.monotonic() + timeout
        while self.counts[(customer, action)] < count:
            if time.monotonic() > deadline:
                got = self.counts[(customer, action)]
                raise TimeoutError(f"{customer}: {got}/{count} {action} within {timeout}s")
            await asyncio.sleep(0.0005)
        return self.last[(customer, action)]

    async def stop(self) -> None:
        if self.task:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        await self.consumer.stop()


def progress(line: str) -> None:
    print(f"  ... {line}", flush=True)  # noqa: T201 - progress of a long run


def reevaluation_pending(url: str) -> float:
    return metric_total(url, "segwarden_segmenter_reevaluation_pending_segments")


async def settle(url: str) -> None:
    """Wait until the background re-evaluation has caught up (its progress metric is 0)."""
    while await asyncio.to_thread(reevaluation_pending, url) > 0:
        await asyncio.sleep(0.5)


def consumed(url: str, topic: str) -> float:
    return metric_total(url, f'segwarden_messages_consumed_total{{topic="{topic}"}}')


async def loaded(url: str, prefix: str) -> None:
    """Wait until the segmenter has applied every customer's event and grant: measured behind a
    backlog of grants, a join would wait for the consent follower to read it (the admission barrier)."""
    while (
        await asyncio.to_thread(processed, url) < CUSTOMERS
        or await asyncio.to_thread(consumed, url, prefix + "consent.changes") < CUSTOMERS
    ):
        await asyncio.sleep(0.5)


async def put_latencies(client: httpx.AsyncClient, grow_to: int, defined: int) -> list[float]:
    """Grow the catalog to `grow_to` segments, then time PUT_SAMPLES redefinitions of existing ones."""
    for i in range(defined, grow_to):
        (await client.put(f"/v1/segments/{segment_id(i)}", json=segment_body(i))).raise_for_status()
    latencies = []
    for n in range(PUT_SAMPLES):
        i = (n * 37) % grow_to
        started = time.perf_counter()
        response = await client.put(f"/v1/segments/{segment_id(i)}", json=segment_body(i))
        latencies.append(time.perf_counter() - started)
        response.raise_for_status()
    return latencies


async def load_customers(producer: AIOKafkaProducer, prefix: str) -> None:
    rng = random.Random(7)
    for c in range(CUSTOMERS):
        customer = f"bg-{c}"
        change = consent_change(customer, "granted")
        await producer.send(prefix + "consent.changes", change.to_bytes(), key=customer.encode())
        event = profile_event(customer, rng.randrange(BACKGROUND_LEVELS))
        await producer.send(prefix + "customer.events", event.to_bytes(), key=customer.encode())
    await producer.flush()


async def join_and_evict(
    producer: AIOKafkaProducer, prefix: str, reader: MembershipCounter, k: int, sample: int
) -> tuple[float, float]:
    """(joined-all latency, eviction latency) of one customer in the first k segments."""
    customer = f"k{k}-{sample}"
    key = customer.encode()
    granted = consent_change(customer, "granted").to_bytes()
    await producer.send_and_wait(prefix + "consent.changes", granted, key=key)
    sent = time.perf_counter()
    await producer.send_and_wait(
        prefix + "customer.events", profile_event(customer, k - 1).to_bytes(), key=key
    )
    joined = await reader.wait(customer, "joined", k) - sent
    sent = time.perf_counter()
    await producer.send_and_wait(
        prefix + "consent.changes", consent_change(customer, "denied").to_bytes(), key=key
    )
    left = await reader.wait(customer, "left", k) - sent
    return joined, left


async def grow_catalog(client: httpx.AsyncClient) -> dict[int, list[float]]:
    """PUT latencies at each catalog size, measured while the growth's re-evaluation still runs."""
    defined, puts = 0, {}
    for size in CATALOG_SIZES:
        puts[size] = await put_latencies(client, size, defined)
        defined = size
        progress(f"PUT at {size} segments: {summary(puts[size])}")
    return puts


async def memberships(
    producer: AIOKafkaProducer, prefix: str, reader: MembershipCounter
) -> tuple[dict[int, list[float]], dict[int, list[float]]]:
    """Joined-all and eviction latencies of customers in each of IN_SEGMENTS segments."""
    joins, evictions = {}, {}
    for k in IN_SEGMENTS:
        pairs = [
            await join_and_evict(producer, prefix, reader, k, s) for s in range(EVICTION_SAMPLES + WARMUP)
        ]
        joins[k] = [j for j, _ in pairs[WARMUP:]]
        evictions[k] = [e for _, e in pairs[WARMUP:]]
        progress(f"in {k} segments: join {summary(joins[k])}, evict {summary(evictions[k])}")
    return joins, evictions


async def run(bootstrap: str, prefix: str, workdir: Path) -> dict[str, object]:
    settings = SegmenterSettings(
        kafka_bootstrap_servers=bootstrap, topic_prefix=prefix, topic_partitions=PARTITIONS
    )
    await asyncio.to_thread(ensure_topics, settings)
    floor_topics = [TopicPlan(prefix + name, 1, {}) for name in ("floor.a", "floor.b")]
    await asyncio.to_thread(ensure_topics, settings, floor_topics)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0, max_batch_size=256 * 1024)
    await producer.start()
    reader = MembershipCounter(bootstrap, prefix + "segment.membership")
    results: dict[str, object] = {}
    try:
        results["floor"] = await transport_floor(bootstrap, prefix)
        segmenter = await asyncio.to_thread(
            start_segmenter, bootstrap, prefix, workdir / "data", workdir / "segmenter.log"
        )
        await reader.start()
        headers = {"Authorization": f"Bearer {TOKEN}"}
        try:
            async with httpx.AsyncClient(base_url=segmenter.url, headers=headers, timeout=120) as client:
                await load_customers(producer, prefix)
                await loaded(segmenter.url, prefix)
                results["puts"] = await grow_catalog(client)
            await settle(segmenter.url)
            results["joins"], results["evictions"] = await memberships(producer, prefix, reader)
        finally:
            segmenter.stop(15)
    finally:
        await reader.stop()
        await producer.stop()
    return results


def report(results: dict[str, object]) -> dict[str, object]:
    floor = summary(results["floor"])  # type: ignore[arg-type]
    puts = {size: summary(v) for size, v in results["puts"].items()}  # type: ignore[attr-defined]
    evictions = {k: summary(v) for k, v in results["evictions"].items()}  # type: ignore[attr-defined]
    joins = {k: summary(v) for k, v in results["joins"].items()}  # type: ignore[attr-defined]
    out = {
        **run_facts(),
        "customers": CUSTOMERS,
        "transport_floor": floor,
        "segment_put": {str(size): s for size, s in puts.items()},
        "eviction": {
            str(k): {
                **s,
                "p50_over_floor_p50": round(s["p50_ms"] / floor["p50_ms"], 2),
                "p99_over_floor_p99": round(s["p99_ms"] / floor["p99_ms"], 2),
            }
            for k, s in evictions.items()
        },
        "joined_all": {str(k): s for k, s in joins.items()},
    }
    lines = [
        f"segment catalogue benchmark ({out['machine']}, {out['at']}, {CUSTOMERS} customers)",
        f"  transport floor (2 hops)        p50 {floor['p50_ms']} ms  p99 {floor['p99_ms']} ms",
    ]
    for size, s in puts.items():
        lines.append(
            f"  segment PUT at {size:>5} segments  p50 {s['p50_ms']} ms  p99 {s['p99_ms']} ms"
            "  (target p99 < 100 ms)"
        )
    for k, s in evictions.items():
        lines.append(
            f"  eviction, in {k:>5} segments    p50 {s['p50_ms']} ms  p99 {s['p99_ms']} ms"
            f"  = {s['p99_ms'] / floor['p99_ms']:.1f}x floor p99 (target <= 3x)"
        )
    for k, s in joins.items():
        lines.append(f"  joined all, {k:>5} segments     p50 {s['p50_ms']} ms  p99 {s['p99_ms']} ms")
    print("\n".join(lines))  # noqa: T201 - the benchmark's report
    return out


def main() -> int:
    write_results("segment_catalog", report(on_own_stack(run)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
