"""Segmenter benchmark: event throughput beside a bare pipe and a peer, eviction beside the transport floor.

Starts its own embedded broker, uses its own topic prefix and Redis keys, and measures in one run:
  1. the transport floor: produce -> consume -> produce -> consume through the broker alone
     (a relay consumer and a final consumer, both with the segmenter's fetch wait);
  2. a bare aiokafka consume-to-produce pipe, an empty faust agent, and the peer (Quix Streams,
     bench/peer_quix.py, when QUIX_PYTHON names an interpreter that has it) draining the same
     kind of backlog;
  3. throughput with 20 segments: a backlog of first events (customers new to Redis), then, after
     a restart, a backlog of returning customers' events (the steady state);
  4. eviction latency: a consent withdrawal produced to consent.changes until the `left` it causes
     is read from segment.membership (the same two hops), while a load generator (a process of
     its own) sends events faster than the segmenter takes them;
  5. a consent stream: CONSENT_STREAM grants sent at once (each customer's rule holds, so each
     ends in a `joined`) with an opt-out of a member after every fourth, first with no event load
     (the floor, after the steady state), then under the load generator again (after the
     eviction phase): grants/s until the last `joined` is read, and each opt-out until its
     `left` is read.
Targets: steady state >= 10,000 events/s, >= 40% of the pipe, >= a quarter of the peer;
eviction p99 within 3x of the floor's p99. BENCH_PROFILE=1 records the segmenter with py-spy
during the steady-state drain (PY_SPY names the binary) and prints the cost per event by part.
Writes bench/results/segmenter.json.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import multiprocessing
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterable, Iterator
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from bench import profiling
from bench.common import (
    RESULTS_DIR,
    bucket_quantile,
    histogram_buckets,
    metric_total,
    own_redis,
    run_facts,
    write_results,
)
from services.segmenter.settings import SegmenterSettings
from shared.embedded import EmbeddedBroker, ensure_redis
from shared.events import (
    ConsentChanged,
    CustomerEvent,
    MembershipChanged,
    SegmentDefinition,
    new_event_id,
    utcnow,
)
from shared.kafka import delete_topics, ensure_topics
from shared.topics import TopicPlan
from tests.support import ServiceProcess, forget_redis_keys

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
PARTITIONS = 3
FETCH_WAIT_MS = 50
SAMPLES = 250
WARMUP = 10
BACKLOG = 10_000  # first events: customers new to Redis (five events each on average)
STEADY = 40_000  # returning customers: the same customers again, after a restart
BACKLOG_CUSTOMERS = 2_000
LOAD_OVER_STEADY = 3.0  # the load generator sends 3x the steady rate measured: a backlog grows
CONSENT_STREAM = 120  # grants of the consent phase, each run (idle, then under load)
QUIX_PYTHON = os.environ.get("QUIX_PYTHON", "")
PROFILE = os.environ.get("BENCH_PROFILE", "") == "1"
PROFILE_STACKS = RESULTS_DIR / "segmenter-profile.txt"
TOKEN = "bench-admin-token"
LOOP_LAG = "segwarden_event_loop_lag_seconds"


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


@contextlib.asynccontextmanager
async def floor_pipe(bootstrap: str, prefix: str, tag: str) -> AsyncIterator[Callable[[], Awaitable[float]]]:
    """Two hops with nothing but the broker: send to A, a relay forwards to B, a reader gets it.
    Yields a function timing one message through (its keys start with `tag`, so a second pipe on
    the same topics does not take the first one's messages for its own)."""
    a, b = prefix + "floor.a", prefix + "floor.b"
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0)
    relay_in, reader = consumer(bootstrap, a, group=prefix + "relay"), consumer(bootstrap, b)
    for client in (producer, relay_in, reader):
        await client.start()
    arrived: dict[bytes, float] = {}
    sent = itertools.count()

    async def relay() -> None:
        async for record in relay_in:
            await producer.send_and_wait(b, record.value)

    async def read() -> None:
        async for record in reader:
            arrived[record.value] = time.perf_counter()

    async def sample() -> float:
        key, at = f"{tag}{next(sent)}".encode(), time.perf_counter()
        await producer.send_and_wait(a, key)
        while key not in arrived:
            await asyncio.sleep(0.0005)
        return arrived[key] - at

    tasks = [asyncio.create_task(relay()), asyncio.create_task(read())]
    try:
        yield sample
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for client in (relay_in, reader, producer):
            await client.stop()


async def transport_floor(bootstrap: str, prefix: str) -> list[float]:
    """The floor with nothing else running: SAMPLES messages through the two hops, one at a time."""
    async with floor_pipe(bootstrap, prefix, "m") as sample:
        latencies = [await sample() for _ in range(SAMPLES + WARMUP)]
    return latencies[WARMUP:]


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


async def send_definitions(producer: AIOKafkaProducer, prefix: str) -> None:
    """The 20 segments on `segment.definitions`, where the segmenter reads them at start."""
    for definition in segment_definitions():
        await producer.send(
            prefix + "segment.definitions", definition.to_bytes(), key=definition.segment_id.encode()
        )
    await producer.flush()


async def producer_with_definitions(bootstrap: str, prefix: str) -> AIOKafkaProducer:
    """A started producer, the 20 segments already sent with it (the caller stops it)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, max_batch_size=256 * 1024)
    await producer.start()
    await send_definitions(producer, prefix)
    return producer


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


def backlog_records(count: int, seed: int) -> Iterator[tuple[bytes, bytes]]:
    """(value, key) of `count` events over BACKLOG_CUSTOMERS customers; the same seed gives the same."""
    rng = random.Random(seed)
    for _ in range(count):
        event = random_event(rng, f"b-{rng.randrange(BACKLOG_CUSTOMERS)}")
        yield event.to_bytes(), event.customer_id.encode()


async def send_records(
    producer: AIOKafkaProducer, topic: str, records: Iterable[tuple[bytes, bytes]]
) -> None:
    for value, key in records:
        await producer.send(topic, value, key=key)
    await producer.flush()


async def produce_backlog(producer: AIOKafkaProducer, topic: str, count: int, seed: int) -> None:
    """`count` events over BACKLOG_CUSTOMERS customers, each built as it is sent."""
    await send_records(producer, topic, backlog_records(count, seed))


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
    return metric_total(url, "segwarden_segmenter_events_processed_total")


async def drain_rate(segmenter: ServiceProcess, target: float) -> float:
    """Events/s from the first processed event of the backlog until the whole backlog is done.
    Polled every 0.1 s from the process's launch (no answer yet counts as nothing done): on a
    quiet machine the backlog takes about a second, and it starts before the service reports
    ready. When the first poll that sees work already sees all of it, the span starts at the last
    poll that saw none, which makes the rate a lower bound."""
    first_at, first_done, idle_at = None, 0.0, time.perf_counter()
    while True:
        try:
            done = await asyncio.to_thread(processed, segmenter.url)
        except httpx.HTTPError:
            if segmenter.process is None or segmenter.process.poll() is not None:
                raise AssertionError(f"the segmenter exited:\n{segmenter.log()}") from None
            done = 0.0
        now = time.perf_counter()
        if done >= target:
            if first_at is not None and now > first_at:
                return (done - first_done) / (now - first_at)
            return done / (now - idle_at)
        if done > 0 and first_at is None:
            first_at, first_done = now, done
        elif done == 0:
            idle_at = now
        await asyncio.sleep(0.1)


async def backlog_rate(
    url: str, producer: AIOKafkaProducer, topic: str, pid: int | None
) -> tuple[dict[str, float], dict[str, float]]:
    """The steady state: STEADY events of the known customers sent faster than the running
    segmenter takes them, and its rate from the end of sending (a backlog is left then, and the
    start-up jobs are long done) until the last is processed; with `pid`, the profile meanwhile."""
    before = await asyncio.to_thread(processed, url)
    await produce_backlog(producer, topic, STEADY, seed=5)
    start_done, started = await asyncio.to_thread(processed, url), time.perf_counter()
    profile = None
    if pid is not None:
        profile = asyncio.create_task(asyncio.to_thread(profiling.record, pid, 4.0, PROFILE_STACKS))
    while (done := await asyncio.to_thread(processed, url)) < before + STEADY:
        await asyncio.sleep(0.5)  # /metrics costs the segmenter CPU: poll gently
    rate = (done - start_done) / (time.perf_counter() - started)
    backlog = {"events_per_s": rate, "backlog_at_start": before + STEADY - start_done}
    return backlog, (profiling.per_event(await profile, rate) if profile else {})


class MembershipReader:
    """When each (customer, action) of `evict-me` (the segment every grant here joins) was first
    read; only customers whose id starts with `keys`."""

    def __init__(self, bootstrap: str, topic: str, keys: tuple[bytes, ...] = (b"e-",)) -> None:
        self.consumer = consumer(bootstrap, topic)
        self.keys = keys
        self.seen: dict[tuple[str, str], float] = {}
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.consumer.start()
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for record in self.consumer:
            if not (record.key or b"").startswith(self.keys):
                continue  # the load's changes: decoding thousands a second would delay the timing
            m = MembershipChanged.model_validate_json(record.value)
            if m.segment_id == "evict-me":  # `recent` is joined by the first event, without consent
                self.seen.setdefault((m.customer_id, m.action), time.perf_counter())

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


EVICTED = [f"e-{i}" for i in range(SAMPLES + WARMUP)]


def click(customer: str) -> bytes:
    """One event of the customer: enough for `evict-me` (and `recent`) to match."""
    event = CustomerEvent(
        event_id=new_event_id(), customer_id=customer, type="click", occurred_at=utcnow(), source="bench"
    )
    return event.to_bytes()


async def grant_evicted(producer: AIOKafkaProducer, prefix: str) -> None:
    """The customers the eviction phase withdraws: granted, with one event each (so they join)."""
    for customer in EVICTED:
        await producer.send(
            prefix + "consent.changes", consent_change(customer, "granted").to_bytes(), key=customer.encode()
        )
        await producer.send(prefix + "customer.events", click(customer), key=customer.encode())
    await producer.flush()


@contextlib.asynccontextmanager
async def event_load(bootstrap: str, prefix: str, rate: int) -> AsyncIterator[Any]:
    """The load generator sending events at `rate` (its own process), once its rate is reached and
    a backlog forms; yields its counter of events sent."""
    context = multiprocessing.get_context("spawn")
    stop, sent = context.Event(), context.Value("q", 0)
    load = context.Process(target=load_events, args=(bootstrap, prefix + "customer.events", rate, stop, sent))
    load.start()
    try:
        await asyncio.sleep(2.0)
        yield sent
    finally:
        stop.set()
        load.join(30)


async def eviction_latencies(
    bootstrap: str, prefix: str, producer: AIOKafkaProducer, url: str, load_rate: int
) -> tuple[list[float], list[float], dict[str, float]]:
    """Withdrawal -> `left` read, one customer at a time, while a load generator sends events at
    `load_rate`, each after one message through the transport floor's two hops (the floor under
    the same load: what the machine and the broker cost then, the rest is the segmenter's); with
    the rates the load was sent and processed at meanwhile."""
    reader = MembershipReader(bootstrap, prefix + "segment.membership")
    await reader.start()
    for customer in EVICTED:
        await reader.wait((customer, "joined"), timeout=120)
    latencies, floors = [], []
    try:
        async with (
            event_load(bootstrap, prefix, load_rate) as sent,
            floor_pipe(bootstrap, prefix, "l") as hop,
        ):
            before, sent_before = await asyncio.to_thread(processed, url), sent.value
            lag_before = await asyncio.to_thread(histogram_buckets, url, LOOP_LAG)
            started = time.perf_counter()
            for i, customer in enumerate(EVICTED):
                floor = await hop()
                at = time.perf_counter()
                await producer.send_and_wait(
                    prefix + "consent.changes",
                    consent_change(customer, "denied").to_bytes(),
                    key=customer.encode(),
                )
                arrived = await reader.wait((customer, "left"))
                if i >= WARMUP:
                    latencies.append(arrived - at)
                    floors.append(floor)
            elapsed, sent_during = time.perf_counter() - started, sent.value - sent_before
    finally:
        await reader.stop()
    done = await asyncio.to_thread(processed, url) - before
    lag = await asyncio.to_thread(histogram_buckets, url, LOOP_LAG)
    rates = {
        "load_sent_per_s": sent_during / elapsed,
        "processed_per_s": done / elapsed,
        # Bucket bounds, not measurements: the loop's lag meanwhile lies at or below them.
        "loop_lag_p50_at_most_s": bucket_quantile(lag_before, lag, 0.5),
        "loop_lag_p99_at_most_s": bucket_quantile(lag_before, lag, 0.99),
    }
    return latencies, floors, rates


async def prepare_consent_streams(producer: AIOKafkaProducer, prefix: str) -> None:
    """The customers of the two consent streams (`i` with no load, `l` under load), sent before the
    steady state so their events are processed by then: every grantee has one event (so a grant
    joins `evict-me`); every member of the opt-outs has one too and is granted."""
    for tag in ("i", "l"):
        members = [f"c{tag}o-{i}" for i in range(CONSENT_STREAM // 4)]
        for customer in [f"c{tag}g-{i}" for i in range(CONSENT_STREAM)] + members:
            await producer.send(prefix + "customer.events", click(customer), key=customer.encode())
        for customer in members:
            change = consent_change(customer, "granted").to_bytes()
            await producer.send(prefix + "consent.changes", change, key=customer.encode())
    await producer.flush()


async def consent_stream(
    bootstrap: str, prefix: str, producer: AIOKafkaProducer, url: str, tag: str
) -> dict[str, Any]:
    """Once the members of stream `tag` have joined: CONSENT_STREAM grants sent at once, an opt-out
    of a member after every fourth; grants/s from the first sent until the last `joined` is read,
    and each opt-out until its `left` is read."""
    reader = MembershipReader(bootstrap, prefix + "segment.membership", keys=(f"c{tag}".encode(),))
    await reader.start()
    try:
        for i in range(CONSENT_STREAM // 4):
            await reader.wait((f"c{tag}o-{i}", "joined"), timeout=120)
        topic = prefix + "consent.changes"
        before, started = await asyncio.to_thread(processed, url), time.perf_counter()
        opted_out: dict[str, float] = {}
        for i in range(CONSENT_STREAM):
            customer = f"c{tag}g-{i}"
            await producer.send(topic, consent_change(customer, "granted").to_bytes(), key=customer.encode())
            if i % 4 == 3:
                member = f"c{tag}o-{i // 4}"
                denial = consent_change(member, "denied").to_bytes()
                await producer.send_and_wait(topic, denial, key=member.encode())
                opted_out[member] = time.perf_counter()
        await producer.flush()
        lefts = [await reader.wait((m, "left"), timeout=300) - at for m, at in opted_out.items()]
        joins = [await reader.wait((f"c{tag}g-{i}", "joined"), timeout=300) for i in range(CONSENT_STREAM)]
    finally:
        await reader.stop()
    elapsed = max(joins) - started
    return {
        "grants_per_s": CONSENT_STREAM / elapsed,
        "opt_out_left": summary(lefts),
        "events_processed_per_s": (await asyncio.to_thread(processed, url) - before) / elapsed,
    }


async def loaded_consent_stream(
    bootstrap: str, prefix: str, producer: AIOKafkaProducer, url: str, load_rate: int
) -> dict[str, Any]:
    """The consent stream `l` while the load generator sends `load_rate` events/s."""
    async with event_load(bootstrap, prefix, load_rate) as sent:
        sent_before, started = sent.value, time.perf_counter()
        loaded = await consent_stream(bootstrap, prefix, producer, url, "l")
        loaded["load_sent_per_s"] = (sent.value - sent_before) / (time.perf_counter() - started)
    return loaded


def load_events(bootstrap: str, topic: str, rate: int, stop: Any, sent: Any) -> None:
    """The load generator's process: events of BACKLOG_CUSTOMERS customers at `rate` until `stop`."""

    async def send() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, max_batch_size=256 * 1024)
        await producer.start()
        rng, tick = random.Random(3), 0.05
        try:
            while not stop.is_set():
                started = time.perf_counter()
                for _ in range(max(1, int(rate * tick))):
                    event = random_event(rng, f"b-{rng.randrange(BACKLOG_CUSTOMERS)}")
                    await producer.send(topic, event.to_bytes(), key=event.customer_id.encode())
                    sent.value += 1
                await asyncio.sleep(max(0.0, tick - (time.perf_counter() - started)))
        finally:
            await producer.stop()

    asyncio.run(send())


async def peer_rate(bootstrap: str, prefix: str, producer: AIOKafkaProducer) -> dict[str, float] | str:
    """The peer (bench/peer_quix.py under QUIX_PYTHON) draining the steady backlog's records, or
    why it did not run."""
    if not QUIX_PYTHON:
        return "not run: QUIX_PYTHON unset (an interpreter whose venv has quixstreams)"
    source, sink = prefix + "peer.in", prefix + "peer.out"
    await produce_backlog(producer, source, BACKLOG, seed=1)
    await produce_backlog(producer, source, STEADY, seed=5)
    script = str(Path(__file__).resolve().parent / "peer_quix.py")
    args = [QUIX_PYTHON, script, bootstrap, source, sink, str(BACKLOG + STEADY)]
    proc = await asyncio.create_subprocess_exec(*args, stdout=asyncio.subprocess.PIPE)
    out, _ = await proc.communicate()
    if proc.returncode != 0:
        return f"failed: exit {proc.returncode}"
    return dict(json.loads(out.decode().strip().splitlines()[-1]))


def start_segmenter(
    bootstrap: str,
    prefix: str,
    data_dir: Path,
    log_path: Path,
    redis_url: str = REDIS_URL,
    ready_s: float = 120,
    partitions: int = PARTITIONS,
) -> ServiceProcess:
    return launch_segmenter(bootstrap, prefix, data_dir, log_path, redis_url, partitions).wait_ready(ready_s)


def launch_segmenter(
    bootstrap: str,
    prefix: str,
    data_dir: Path,
    log_path: Path,
    redis_url: str = REDIS_URL,
    partitions: int = PARTITIONS,
) -> ServiceProcess:
    """The segmenter's process, started; not yet ready."""
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "REDIS_URL": redis_url,
        "TOPIC_PREFIX": prefix,
        "TOPIC_PARTITIONS": str(partitions),
        "DATA_DIR": str(data_dir),
        "AUTH_TOKENS": f"{TOKEN}=*",
        "INTERNAL_TOKEN": TOKEN,
        "LOG_LEVEL": "WARNING",
        "KAFKA_FETCH_MAX_WAIT_MS": str(FETCH_WAIT_MS),
    }
    return ServiceProcess("segmenter", env, log_path)


async def segmenter_phases(
    bootstrap: str, prefix: str, producer: AIOKafkaProducer, workdir: Path
) -> dict[str, Any]:
    """First events (a cold start on a backlog), returning customers, then eviction under load."""
    await send_definitions(producer, prefix)
    await produce_backlog(producer, prefix + "customer.events", BACKLOG, seed=1)

    segmenter = launch_segmenter(bootstrap, prefix, workdir / "data", workdir / "segmenter.log")
    try:
        first = await drain_rate(segmenter, BACKLOG)
        await asyncio.to_thread(segmenter.wait_ready, 120)
        await grant_evicted(producer, prefix)
        await prepare_consent_streams(producer, prefix)
        pid = segmenter.process.pid if PROFILE and segmenter.process else None
        steady, profile = await backlog_rate(segmenter.url, producer, prefix + "customer.events", pid)
        # The floor of the consent stream: the steady backlog is drained, no load runs.
        idle = await consent_stream(bootstrap, prefix, producer, segmenter.url, "i")
        load_rate = int(max(2_000, steady["events_per_s"] * LOAD_OVER_STEADY))
        evictions, loaded_floor, under = await eviction_latencies(
            bootstrap, prefix, producer, segmenter.url, load_rate
        )
        loaded = await loaded_consent_stream(bootstrap, prefix, producer, segmenter.url, load_rate)
    finally:
        await asyncio.to_thread(segmenter.stop, 15)
    return {
        "first_rate": first,
        "steady_rate": steady,
        "profile": profile,
        "evictions": evictions,
        "loaded_floor": loaded_floor,
        "eviction_load": under,
        "consent_stream": {"idle": idle, "loaded": loaded},
    }


async def run(bootstrap: str, prefix: str, workdir: Path) -> dict[str, Any]:
    settings = SegmenterSettings(
        kafka_bootstrap_servers=bootstrap, topic_prefix=prefix, topic_partitions=PARTITIONS
    )
    extra = [
        TopicPlan(prefix + name, 1 if "floor" in name else PARTITIONS, {})
        for name in ("floor.a", "floor.b", "pipe.in", "pipe.out", "faust.in", "peer.in", "peer.out")
    ]
    await asyncio.to_thread(ensure_topics, settings)
    await asyncio.to_thread(ensure_topics, settings, extra)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, max_batch_size=256 * 1024)
    await producer.start()
    try:
        floor = await transport_floor(bootstrap, prefix)
        pipe = await pipe_rate(bootstrap, prefix, producer)
        faust_only = await faust_rate(bootstrap, prefix, producer)
        peer = await peer_rate(bootstrap, prefix, producer)
        phases = await segmenter_phases(bootstrap, prefix, producer, workdir)
    finally:
        await producer.stop()
    return {"floor": floor, "pipe_rate": pipe, "faust_rate": faust_only, "peer": peer, **phases}


def _ms(seconds: float | None) -> str:
    return "none observed" if seconds is None else f"{seconds * 1000:g} ms"


def report(results: dict[str, Any]) -> dict[str, Any]:
    floor, evictions = summary(results["floor"]), summary(results["evictions"])
    loaded_floor = summary(results["loaded_floor"])
    pipe, steady, first = (
        float(results["pipe_rate"]),
        float(results["steady_rate"]["events_per_s"]),
        float(results["first_rate"]),
    )
    peer = results["peer"]
    peer_rate = float(peer["events_per_s"]) if isinstance(peer, dict) else None
    load = results["eviction_load"]
    idle, loaded = results["consent_stream"]["idle"], results["consent_stream"]["loaded"]
    out = {
        **run_facts(),
        "load_average": os.getloadavg()[0],
        "transport_floor": floor,
        "eviction_latency": evictions,
        "eviction_p99_over_floor_p99": round(evictions["p99_ms"] / floor["p99_ms"], 2),
        "transport_floor_under_load": loaded_floor,
        "eviction_p99_over_loaded_floor_p99": round(evictions["p99_ms"] / loaded_floor["p99_ms"], 2),
        "eviction_load_sent_per_s": round(load["load_sent_per_s"]),
        "eviction_load_processed_per_s": round(load["processed_per_s"]),
        "eviction_loop_lag_p50_at_most_s": load["loop_lag_p50_at_most_s"],
        "eviction_loop_lag_p99_at_most_s": load["loop_lag_p99_at_most_s"],
        "pipe_events_per_s": round(pipe),
        "faust_noop_agent_events_per_s": round(float(results["faust_rate"])),
        "peer": peer if isinstance(peer, str) else {k: round(v, 2) for k, v in peer.items()},
        "segmenter_first_events_per_s": round(first),
        "segmenter_steady_events_per_s": round(steady),
        "steady_backlog_at_start": round(results["steady_rate"]["backlog_at_start"]),
        "steady_over_pipe": round(steady / pipe, 3),
        "steady_over_peer": round(steady / peer_rate, 3) if peer_rate else None,
        "segments": 20,
        "backlog_events": BACKLOG,
        "steady_events": STEADY,
        "profile_us_per_event": results["profile"],
        "consent_stream_grants": CONSENT_STREAM,
        "consent_idle_grants_per_s": round(idle["grants_per_s"], 1),
        "consent_idle_opt_out_left": idle["opt_out_left"],
        "consent_loaded_grants_per_s": round(loaded["grants_per_s"], 1),
        "consent_loaded_opt_out_left": loaded["opt_out_left"],
        "consent_loaded_over_idle": round(loaded["grants_per_s"] / idle["grants_per_s"], 3),
        "consent_load_sent_per_s": round(loaded["load_sent_per_s"]),
        "consent_load_processed_per_s": round(loaded["events_processed_per_s"]),
    }
    peer_line = f"{peer_rate:.0f} events/s" if peer_rate else str(peer)
    lines = [
        f"segmenter benchmark ({out['machine']}, {out['at']}, load average {out['load_average']:.1f})",
        f"  transport floor (2 hops)  p50 {floor['p50_ms']} ms  p99 {floor['p99_ms']} ms",
        f"  eviction (2 hops + work)  p50 {evictions['p50_ms']} ms  p99 {evictions['p99_ms']} ms"
        f"  under {out['eviction_load_sent_per_s']} events/s sent, {out['eviction_load_processed_per_s']}/s"
        " processed",
        f"  eviction p99 / floor p99  {out['eviction_p99_over_floor_p99']}x  (target <= 3x)",
        f"  floor under the same load p50 {loaded_floor['p50_ms']} ms  p99 {loaded_floor['p99_ms']} ms;"
        f"  eviction p99 / it {out['eviction_p99_over_loaded_floor_p99']}x",
        f"  segmenter's loop lag meanwhile  p50 <= {_ms(out['eviction_loop_lag_p50_at_most_s'])}"
        f"  p99 <= {_ms(out['eviction_loop_lag_p99_at_most_s'])}  (bucket bounds)",
        f"  bare pipe                 {out['pipe_events_per_s']} events/s",
        f"  faust agent doing nothing {out['faust_noop_agent_events_per_s']} events/s",
        f"  peer (Quix Streams)       {peer_line}",
        f"  segmenter, first events   {out['segmenter_first_events_per_s']} events/s",
        f"  segmenter, steady state   {out['segmenter_steady_events_per_s']} events/s"
        f"  = {out['steady_over_pipe']:.0%} of the pipe (target >= 40%),"
        f" {out['steady_over_peer'] or float('nan'):.0%} of the peer (target >= 25%, >= 10,000/s)",
        f"  consent stream, no load   {out['consent_idle_grants_per_s']} grants/s,"
        f"  opt-out -> left p50 {idle['opt_out_left']['p50_ms']} ms",
        f"  consent stream, saturated {out['consent_loaded_grants_per_s']} grants/s"
        f" = {out['consent_loaded_over_idle']:.0%} of no load,"
        f"  opt-out -> left p50 {loaded['opt_out_left']['p50_ms']} ms, max"
        f" {loaded['opt_out_left']['p99_ms']} ms (p99 of {loaded['opt_out_left']['samples']})"
        f"  under {out['consent_load_sent_per_s']} events/s sent,"
        f" {out['consent_load_processed_per_s']}/s processed",
    ]
    lines += [f"    {part:<28} {us:8.1f} us/event" for part, us in results["profile"].items()]
    print("\n".join(lines))  # noqa: T201 - the benchmark's report
    return out


def on_own_stack(measure: Callable[[str, str, Path], Coroutine[Any, Any, dict[str, Any]]]) -> dict[str, Any]:
    """`measure(bootstrap, prefix, workdir)` on an embedded broker of its own (and a Redis, when
    none answers), under a fresh topic prefix whose topics and Redis keys are deleted afterwards."""
    prefix = f"bench{uuid.uuid4().hex[:6]}."
    workdir = Path(tempfile.mkdtemp(prefix="segwarden-bench-"))
    broker = EmbeddedBroker().start()
    redis_process = ensure_redis(REDIS_URL, workdir / "redis")
    try:
        return asyncio.run(measure(broker.bootstrap, prefix, workdir))
    finally:
        settings = SegmenterSettings(kafka_bootstrap_servers=broker.bootstrap, topic_prefix=prefix)
        delete_topics(settings, [p.name for p in settings_plan(settings)])
        broker.stop()
        forget_redis_keys(REDIS_URL, prefix)
        if redis_process:
            redis_process.terminate()


def on_private_stack(
    tag: str, measure: Callable[[SegmenterSettings, Path, str], Coroutine[Any, Any, dict[str, Any]]]
) -> dict[str, Any]:
    """`measure(settings, workdir, redis_url)` on an embedded broker and a redis-server of its own
    (a free port: its INFO and a FLUSHDB there are the bench's alone, never the shared 6379),
    under a fresh topic prefix whose topics are deleted afterwards."""
    workdir = Path(tempfile.mkdtemp(prefix=f"segwarden-bench-{tag}-"))
    broker = EmbeddedBroker().start()
    redis_process, redis_url = own_redis(workdir / "redis")
    settings = SegmenterSettings(
        kafka_bootstrap_servers=broker.bootstrap,
        topic_prefix=f"bench{tag}{uuid.uuid4().hex[:6]}.",
        topic_partitions=PARTITIONS,
        data_dir=workdir / "data",
    )
    try:
        ensure_topics(settings)
        return asyncio.run(measure(settings, workdir, redis_url))
    finally:
        delete_topics(settings, [p.name for p in settings_plan(settings)])
        broker.stop()
        redis_process.terminate()
        redis_process.wait(10)


def main() -> int:
    write_results("segmenter", report(on_own_stack(run)))
    return 0


def settings_plan(settings: SegmenterSettings) -> list[TopicPlan]:
    from shared.kafka import topic_names

    return topic_names(settings).plan()


if __name__ == "__main__":
    sys.exit(main())
