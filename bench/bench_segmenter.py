"""Segmenter benchmark: eviction latency beside the transport floor, and event throughput beside a bare pipe.

Starts its own embedded broker, uses its own topic prefix and Redis keys, and measures in one run:
  1. the transport floor: produce -> consume -> produce -> consume through the broker alone
     (a relay consumer and a final consumer, both with the segmenter's fetch wait);
  2. eviction latency: a consent withdrawal produced to consent.changes until the `left` it causes
     is read from segment.membership (the same two hops), under a background load of events;
  3. throughput: a backlog of events drained by the segmenter with 20 segments defined, beside
     a bare aiokafka consume-to-produce pipe draining the same backlog.
Targets: eviction p99 within 3x of the floor's p99; throughput at least 50% of the pipe's.
Writes bench/results/segmenter.json.
"""

from __future__ import annotations

import asyncio
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from bench.common import run_facts, write_results
from services.segmenter.settings import SegmenterSettings
from shared.embedded import EmbeddedBroker, ensure_redis
from shared.events import (  # noqa: E402
    ConsentChanged,
    CustomerEvent,
    MembershipChanged,
    SegmentDefinition,
    new_event_id,
    utcnow,
)
from shared.kafka import delete_topics, ensure_topics
from shared.topics import TopicPlan
from tests.support import ServiceProcess

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
PARTITIONS = 3
FETCH_WAIT_MS = 50
SAMPLES = 250
WARMUP = 10
BACKLOG = 10_000
BACKLOG_CUSTOMERS = 2_000
BACKGROUND_RATE = 300  # events/s while eviction latency is measured
TOKEN = "bench-admin-token"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def summary(values: list[float]) -> dict[str, float]:
    return {
        "p50_ms": round(percentile(values, 0.5) * 1000, 1),
        "p99_ms": round(percentile(values, 0.99) * 1000, 1),
        "mean_ms": round(statistics.fmean(values) * 1000, 1),
        "samples": len(values),
    }


def consumer(bootstrap: str, *topics: str, group: str | None = None) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        *topics,
        bootstrap_servers=bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=FETCH_WAIT_MS,
        session_timeout_ms=6000,
        heartbeat_interval_ms=1000,
        enable_auto_commit=group is not None,
    )


async def transport_floor(bootstrap: str, prefix: str) -> list[float]:
    """Two hops with nothing but the broker: send to A, a relay forwards to B, a reader gets it."""
    a, b = prefix + "floor.a", prefix + "floor.b"
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0)
    relay_in, reader = consumer(bootstrap, a, group=prefix + "relay"), consumer(bootstrap, b)
    for client in (producer, relay_in, reader):
        await client.start()
    arrived: dict[bytes, float] = {}

    async def relay() -> None:
        async for record in relay_in:
            await producer.send_and_wait(b, record.value)

    async def read() -> None:
        async for record in reader:
            arrived[record.value] = time.perf_counter()

    tasks = [asyncio.create_task(relay()), asyncio.create_task(read())]
    latencies = []
    try:
        for i in range(SAMPLES + WARMUP):
            key, sent = f"m{i}".encode(), time.perf_counter()
            await producer.send_and_wait(a, key)
            while key not in arrived:
                await asyncio.sleep(0.0005)
            if i >= WARMUP:
                latencies.append(arrived[key] - sent)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for client in (relay_in, reader, producer):
            await client.stop()
    return latencies


def segment_definitions() -> list[SegmentDefinition]:
    rules = [
        ("evict-me", "event_count >= 1", ("marketing_email",)),
        ("big-spenders", "total_spend >= 500", ("marketing_email",)),
        ("frequent", "purchase_count >= 3", ()),
        ("clickers", "events.click >= 5", ("personalization",)),
        ("de-gold", "profile.country == 'DE' and profile.tier == 'gold'", ("marketing_email",)),
        ("recent", "last_seen_days <= 7", ()),
    ]
    for i in range(len(rules), 20):
        rules.append((f"tier-{i}", f"total_spend >= {i * 40} and events.view >= {i % 5}", ("marketing_sms",)))
    return [
        SegmentDefinition(
            event_id=new_event_id(),
            segment_id=sid,
            name=sid,
            rule=rule,
            required_purposes=purposes,
            updated_at=utcnow(),
        )
        for sid, rule, purposes in rules
    ]


def random_event(rng: random.Random, customer: str) -> CustomerEvent:
    kind = rng.random()
    if kind < 0.3:
        return CustomerEvent(
            event_id=new_event_id(),
            customer_id=customer,
            type="purchase",
            occurred_at=utcnow(),
            source="bench",
            attributes={"amount": rng.randrange(5, 300), "currency": "EUR"},
        )
    attrs = (
        {"country": rng.choice(["DE", "FR"]), "tier": rng.choice(["gold", "silver"])} if kind < 0.4 else {}
    )
    event_type = "profile_update" if attrs else rng.choice(["click", "view"])
    return CustomerEvent(
        event_id=new_event_id(),
        customer_id=customer,
        type=event_type,
        occurred_at=utcnow(),
        source="bench",
        attributes=attrs,
    )


async def produce_backlog(producer: AIOKafkaProducer, topic: str, count: int, seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(count):
        event = random_event(rng, f"b-{rng.randrange(BACKLOG_CUSTOMERS)}")
        await producer.send(topic, event.to_bytes(), key=event.customer_id.encode())
    await producer.flush()


async def pipe_rate(bootstrap: str, prefix: str, producer: AIOKafkaProducer) -> float:
    """Events/s of a bare aiokafka consume-to-produce pipe draining the same kind of backlog."""
    source, sink = prefix + "pipe.in", prefix + "pipe.out"
    await produce_backlog(producer, source, BACKLOG, seed=2)
    pipe_in = consumer(bootstrap, source, group=prefix + "pipe")
    await pipe_in.start()
    moved, started = 0, None
    try:
        while moved < BACKLOG:
            batches = await pipe_in.getmany(timeout_ms=1000, max_records=2000)
            futures = []
            for records in batches.values():
                for record in records:
                    futures.append(await producer.send(sink, record.value, key=record.key))
            if futures and started is None:
                started = time.perf_counter()
            await asyncio.gather(*futures)
            moved += len(futures)
    finally:
        await pipe_in.stop()
    return BACKLOG / (time.perf_counter() - (started or time.perf_counter()))


async def faust_rate(bootstrap: str, prefix: str, producer: AIOKafkaProducer) -> float:
    """Events/s of a faust agent that only takes batches (no decoding, no work): faust's own ceiling."""
    from services.segmenter.adapters.faust_transport import SegmenterFaustApp

    source = prefix + "faust.in"
    await produce_backlog(producer, source, BACKLOG, seed=4)
    app = SegmenterFaustApp(
        prefix + "bench-faust",
        broker=f"kafka://{bootstrap}",
        web_enabled=False,
        web_bind="127.0.0.1",
        broker_session_timeout=6,
        broker_heartbeat_interval=1,
        broker_rebalance_timeout=6,
        consumer_auto_offset_reset="earliest",
    )
    app.fetch_max_wait_ms = FETCH_WAIT_MS
    seen: list[float] = []
    topic = app.topic(source, key_serializer="raw", value_serializer="raw", partitions=PARTITIONS)

    # Any, as in stream_app.py: the agent is handed a StreamT, whose protocol omits take_events.
    async def drain(stream: Any) -> None:
        async for batch in stream.take_events(500, within=0.1):
            seen.extend(time.perf_counter() for _ in batch)

    app.agent(topic, name="drain")(drain)
    await app.start()
    try:
        while len(seen) < BACKLOG:
            await asyncio.sleep(0.05)
    finally:
        await app.stop()
    return (BACKLOG - 1) / (seen[-1] - seen[0])


def processed(url: str) -> float:
    total = 0.0
    for line in httpx.get(f"{url}/metrics", timeout=10).text.splitlines():
        if line.startswith("segwarden_segmenter_events_processed_total{"):
            total += float(line.rsplit(" ", 1)[1])
    return total


async def drain_rate(url: str, target: float) -> float:
    """Events/s from the first processed event of the backlog until the whole backlog is done."""
    first_at = None
    while True:
        done = await asyncio.to_thread(processed, url)
        now = time.perf_counter()
        if done > 0 and first_at is None:
            first_at, first_done = now, done
        if done >= target:
            return (done - first_done) / (now - first_at) if first_at and now > first_at else float("nan")
        await asyncio.sleep(0.5)  # /metrics costs the segmenter CPU: poll gently


class MembershipReader:
    def __init__(self, bootstrap: str, topic: str) -> None:
        self.consumer = consumer(bootstrap, topic)
        self.seen: dict[tuple[str, str], float] = {}
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.consumer.start()
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for record in self.consumer:
            m = MembershipChanged.model_validate_json(record.value)
            self.seen[(m.customer_id, m.action)] = time.perf_counter()

    async def wait(self, key: tuple[str, str], timeout: float = 30) -> float:
        deadline = time.monotonic() + timeout
        while key not in self.seen:
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {key} within {timeout}s")
            await asyncio.sleep(0.0005)
        return self.seen[key]

    async def stop(self) -> None:
        if self.task:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        await self.consumer.stop()


def consent_change(customer: str, status: str) -> ConsentChanged:
    return ConsentChanged(
        event_id=new_event_id(),
        customer_id=customer,
        purpose="marketing_email",
        status=status,  # type: ignore[arg-type]
        previous_status=None,
        reason="user",
        source="bench",
        jurisdiction="GDPR",
        policy_version="bench",
        recorded_at=utcnow(),
    )


async def eviction_latencies(bootstrap: str, prefix: str, producer: AIOKafkaProducer) -> list[float]:
    reader = MembershipReader(bootstrap, prefix + "segment.membership")
    await reader.start()
    customers = [f"e-{i}" for i in range(SAMPLES + WARMUP)]
    for customer in customers:
        await producer.send(
            prefix + "consent.changes", consent_change(customer, "granted").to_bytes(), key=customer.encode()
        )
        event = CustomerEvent(
            event_id=new_event_id(), customer_id=customer, type="click", occurred_at=utcnow(), source="bench"
        )
        await producer.send(prefix + "customer.events", event.to_bytes(), key=customer.encode())
    await producer.flush()
    for customer in customers:
        await reader.wait((customer, "joined"), timeout=120)
    stop = asyncio.Event()
    background = asyncio.create_task(background_load(producer, prefix + "customer.events", stop))
    latencies = []
    try:
        for i, customer in enumerate(customers):
            sent = time.perf_counter()
            await producer.send_and_wait(
                prefix + "consent.changes",
                consent_change(customer, "denied").to_bytes(),
                key=customer.encode(),
            )
            arrived = await reader.wait((customer, "left"))
            if i >= WARMUP:
                latencies.append(arrived - sent)
    finally:
        stop.set()
        await background
        await reader.stop()
    return latencies


async def background_load(producer: AIOKafkaProducer, topic: str, stop: asyncio.Event) -> None:
    rng = random.Random(3)
    while not stop.is_set():
        started = time.perf_counter()
        for _ in range(BACKGROUND_RATE // 20):
            event = random_event(rng, f"bg-{rng.randrange(500)}")
            await producer.send(topic, event.to_bytes(), key=event.customer_id.encode())
        await asyncio.sleep(max(0.0, 0.05 - (time.perf_counter() - started)))


def start_segmenter(bootstrap: str, prefix: str, data_dir: Path, log_path: Path) -> ServiceProcess:
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "REDIS_URL": REDIS_URL,
        "TOPIC_PREFIX": prefix,
        "TOPIC_PARTITIONS": str(PARTITIONS),
        "DATA_DIR": str(data_dir),
        "AUTH_TOKENS": f"{TOKEN}=*",
        "INTERNAL_TOKEN": TOKEN,
        "LOG_LEVEL": "WARNING",
        "KAFKA_FETCH_MAX_WAIT_MS": str(FETCH_WAIT_MS),
    }
    return ServiceProcess("segmenter", env, log_path).wait_ready(120)


async def run(bootstrap: str, prefix: str, workdir: Path) -> dict[str, object]:
    settings = SegmenterSettings(
        kafka_bootstrap_servers=bootstrap, topic_prefix=prefix, topic_partitions=PARTITIONS
    )
    extra = [
        TopicPlan(prefix + name, 1 if "floor" in name else PARTITIONS, {})
        for name in ("floor.a", "floor.b", "pipe.in", "pipe.out", "faust.in")
    ]
    await asyncio.to_thread(ensure_topics, settings)
    await asyncio.to_thread(ensure_topics, settings, extra)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, max_batch_size=256 * 1024)
    await producer.start()
    try:
        floor = await transport_floor(bootstrap, prefix)
        pipe = await pipe_rate(bootstrap, prefix, producer)
        faust_only = await faust_rate(bootstrap, prefix, producer)
        for definition in segment_definitions():
            await producer.send(
                prefix + "segment.definitions", definition.to_bytes(), key=definition.segment_id.encode()
            )
        await produce_backlog(producer, prefix + "customer.events", BACKLOG, seed=1)
        segmenter = await asyncio.to_thread(
            start_segmenter, bootstrap, prefix, workdir / "data", workdir / "segmenter.log"
        )
        try:
            segmenter_rate = await drain_rate(segmenter.url, BACKLOG)
            evictions = await eviction_latencies(bootstrap, prefix, producer)
        finally:
            segmenter.stop(15)
    finally:
        await producer.stop()
    return {
        "floor": floor,
        "evictions": evictions,
        "pipe_rate": pipe,
        "faust_rate": faust_only,
        "segmenter_rate": segmenter_rate,
    }


def report(results: dict[str, object]) -> dict[str, object]:
    floor, evictions = summary(results["floor"]), summary(results["evictions"])  # type: ignore[arg-type]
    pipe, rate = float(results["pipe_rate"]), float(results["segmenter_rate"])  # type: ignore[arg-type]
    out = {
        **run_facts(),
        "transport_floor": floor,
        "eviction_latency": evictions,
        "eviction_p99_over_floor_p99": round(evictions["p99_ms"] / floor["p99_ms"], 2),
        "background_events_per_s": BACKGROUND_RATE,
        "pipe_events_per_s": round(pipe),
        "faust_noop_agent_events_per_s": round(float(results["faust_rate"])),  # type: ignore[arg-type]
        "segmenter_events_per_s": round(rate),
        "segmenter_over_pipe": round(rate / pipe, 3),
        "segments": 20,
        "backlog_events": BACKLOG,
    }
    lines = [
        f"segmenter benchmark ({out['machine']}, {out['at']})",
        f"  transport floor (2 hops)  p50 {floor['p50_ms']} ms  p99 {floor['p99_ms']} ms",
        f"  eviction (2 hops + work)  p50 {evictions['p50_ms']} ms  p99 {evictions['p99_ms']} ms"
        f"  under {BACKGROUND_RATE} events/s",
        f"  eviction p99 / floor p99  {out['eviction_p99_over_floor_p99']}x  (target <= 3x)",
        f"  bare pipe                 {out['pipe_events_per_s']} events/s",
        f"  faust agent doing nothing {out['faust_noop_agent_events_per_s']} events/s  (faust's own ceiling)",
        f"  segmenter, 20 segments    {out['segmenter_events_per_s']} events/s"
        f"  = {out['segmenter_over_pipe']:.0%} of the pipe  (target >= 50%)",
    ]
    print("\n".join(lines))  # noqa: T201 - the benchmark's report
    return out


def main() -> int:
    prefix = f"bench{uuid.uuid4().hex[:6]}."
    workdir = Path(tempfile.mkdtemp(prefix="segwarden-bench-"))
    broker = EmbeddedBroker().start()
    redis_process = ensure_redis(REDIS_URL, workdir / "redis")
    try:
        results = asyncio.run(run(broker.bootstrap, prefix, workdir))
        out = report(results)
    finally:
        settings = SegmenterSettings(kafka_bootstrap_servers=broker.bootstrap, topic_prefix=prefix)
        delete_topics(settings, [p.name for p in settings_plan(settings)])
        broker.stop()
        if redis_process:
            redis_process.terminate()
    write_results("segmenter", out)
    return 0


def settings_plan(settings: SegmenterSettings) -> list[TopicPlan]:
    from shared.kafka import topic_names

    return topic_names(settings).plan()


if __name__ == "__main__":
    sys.exit(main())
