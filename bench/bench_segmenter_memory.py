"""Segmenter memory benchmark: Redis bytes per customer and per membership, and the segmenter's RSS.

Starts its own embedded broker and its own Redis (shared.embedded's launcher on a free port,
nothing kept on disk), so INFO's used_memory is the segmenter's alone; never the shared 6379.
The population goes through the segmenter's own inputs, as in production: 20 segments (those of
bench_segmenter); for half of BENCH_MEMORY_CUSTOMERS customers (default 200,000) a grant of
marketing_email written before the segmenter starts, through its own adapter
(RedisCustomerStore.apply_consent and remember, the consent follower's Lua script and sets;
through the topics it is too slow to wait for here: grants on consent.changes are handled one at
a time, acknowledged each, and consent.state loads one customer a round trip, a few dozen a
second on a loaded 2-core machine); then one event each on `customer.events` through the running
segmenter, so every customer joins `recent` and every granted one also the consent-gated
`evict-me`. The bench waits until every
event is processed, the segments hold every member they should and every outbox is published,
then reports: used_memory's growth per customer and per membership, keys per customer, MEMORY
USAGE by kind of key (with their encodings), and the segmenter's RSS (now and its peak).
Targets (issue 14): <= 400 bytes a customer with 20 segments, no key whose count grows with the
event rate, RSS < 1 GB at 1M customers. Writes bench/results/segmenter-memory.json.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

import redis
import redis.asyncio as aioredis
from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner

from bench import bench_segmenter as seg
from bench.common import metric_total, run_facts, write_results
from bench.segmenter_memory import bytes_by_kind, proc_status_bytes
from services.segmenter.adapters.redis_keys import KeyLayout
from services.segmenter.adapters.redis_store import RedisCustomerStore
from services.segmenter.domain.consent import PurposeConsent
from services.segmenter.settings import SegmenterSettings
from shared.pseudonym import load_pseudonym_key
from tests.support import ServiceProcess

CUSTOMERS = int(os.environ.get("BENCH_MEMORY_CUSTOMERS", "200000"))
PASSES = ("sweep", "compliance", "reevaluation", "reconcile")
GATED, ALWAYS = "evict-me", "recent"  # joined by every granted customer / by every customer


def customer(i: int) -> str:
    return f"m-{i}"


async def grant(settings: SegmenterSettings, redis_url: str, customers: int) -> int:
    """The even customers granted marketing_email and remembered on their partition (the one the
    producer's partitioner gives their key), as the consent follower does; how many."""
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    store = RedisCustomerStore(client, KeyLayout(settings.redis_namespace), load_pseudonym_key(settings))
    partitioner, partitions = DefaultPartitioner(), list(range(settings.topic_partitions))
    now = time.time()
    granted = PurposeConsent("granted", None, now, 1)

    async def one(customer_id: str) -> None:
        await store.apply_consent(customer_id, {"marketing_email": granted})
        await store.remember(partitioner(customer_id.encode(), partitions, partitions), customer_id)

    try:
        ids = [customer(i) for i in range(0, customers, 2)]
        for start in range(0, len(ids), 32):  # 32 at a time: within the client's connection pool
            await asyncio.gather(*(one(c) for c in ids[start : start + 32]))
    finally:
        await client.aclose()  # type: ignore[attr-defined]
    return len(ids)


async def send_events(producer: AIOKafkaProducer, prefix: str, customers: int) -> None:
    for i in range(customers):
        event = seg.random_event(random.Random(i), customer(i))
        await producer.send(prefix + "customer.events", event.to_bytes(), key=customer(i).encode())
    await producer.flush()


def settled(client: redis.Redis, namespace: str, customers: int, granted: int) -> bool:
    """Every event's customer is in `recent`, every granted one in `evict-me` (admission done),
    and every outbox is published (empty, so gone): Redis at rest."""
    keys = KeyLayout(namespace)
    always, gated = (int(client.hget(keys.members(s), "count") or 0) for s in (ALWAYS, GATED))  # type: ignore[arg-type]
    if always < customers or gated < granted:
        return False
    return next(client.scan_iter(f"{namespace}*:outbox", count=10_000), None) is None


async def wait_for(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await asyncio.to_thread(check):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not reached within {timeout:.0f}s")
        await asyncio.sleep(1.0)  # /metrics and SCARD cost the segmenter little: poll gently


def pass_paused(url: str, pass_name: str) -> float:
    """Seconds the segmenter's passes of this kind gave way to live input (services/segmenter/pacing.py)."""
    return round(metric_total(url, f'segwarden_segmenter_pass_paused_seconds_total{{pass="{pass_name}"}}'), 1)


def memberships(client: redis.Redis, namespace: str) -> int:
    """Members of every segment: the `count` of each segment's index head."""
    heads = list(client.scan_iter(f"{namespace}seg:*:members", count=1000))
    return sum(int(client.hget(k, "count") or 0) for k in heads)  # type: ignore[arg-type]


async def measure(settings: SegmenterSettings, workdir: Path, redis_url: str) -> dict[str, Any]:
    bootstrap, prefix = settings.kafka_bootstrap_servers, settings.topic_prefix
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    namespace = f"sw:{prefix}"
    producer = await seg.producer_with_definitions(bootstrap, prefix)
    before = {"used": int(client.info("memory")["used_memory"]), "keys": int(client.dbsize())}
    granted = await grant(settings, redis_url, CUSTOMERS)
    print(f"  granted {granted} customers; starting the segmenter", flush=True)  # noqa: T201
    timeout = max(600.0, CUSTOMERS / 200)

    def start() -> ServiceProcess:
        log, data = workdir / "segmenter.log", workdir / "data"
        return seg.start_segmenter(bootstrap, prefix, data, log, redis_url, ready_s=timeout)

    progress = {"at": time.perf_counter(), "done": 0.0, "first": 0.0, "last": 0.0}

    def drained(url: str, now: float) -> bool:
        """Whether every event is processed; every 30 s the drain rate so far, so a run that cannot
        finish in time is seen early."""
        done = seg.processed(url)
        if done and not progress["first"]:
            progress["first"] = now  # the drain rate counts from the first event processed
        progress["last"] = now
        if now - progress["at"] >= 30:
            rate = (done - progress["done"]) / (now - progress["at"])
            left = (CUSTOMERS - done) / rate if rate else float("inf")
            line = f"  drained {done:.0f}/{CUSTOMERS}: {rate:.0f} events/s, about {left:.0f} s left"
            print(line, flush=True)  # noqa: T201
            progress.update(at=now, done=done)
        return done >= CUSTOMERS

    started = time.perf_counter()
    segmenter = await asyncio.to_thread(start)
    try:
        assert segmenter.process is not None
        pid = segmenter.process.pid
        rss_before = proc_status_bytes(pid, "VmRSS")
        await send_events(producer, prefix, CUSTOMERS)
        await wait_for(lambda: drained(segmenter.url, time.perf_counter()), timeout, "every event processed")
        await wait_for(lambda: settled(client, namespace, CUSTOMERS, granted), timeout, "every membership")
        elapsed = time.perf_counter() - started
        paused = {p: pass_paused(segmenter.url, p) for p in PASSES}
        rss, peak = proc_status_bytes(pid, "VmRSS"), proc_status_bytes(pid, "VmHWM")
        used, keys = int(client.info("memory")["used_memory"]), int(client.dbsize())
        members = memberships(client, namespace)
        kinds = await asyncio.to_thread(bytes_by_kind, client, namespace)
    finally:
        await asyncio.to_thread(segmenter.stop, 15)
        await producer.stop()
        client.close()
    return {
        "customers": CUSTOMERS,
        "granted": granted,
        "memberships": members,
        "load_and_settle_s": round(elapsed, 1),
        "drain_events_per_s": round(CUSTOMERS / max(1e-9, progress["last"] - progress["first"])),
        "passes_paused_s": paused,
        "redis_bytes_per_customer": round((used - before["used"]) / CUSTOMERS),
        "redis_bytes_per_membership_of_member_sets": round(
            sum(v["bytes"] for k, v in kinds.items() if k.startswith("seg:")) / max(1, members)
        ),
        "redis_keys_per_customer": round((keys - before["keys"]) / CUSTOMERS, 2),
        "segmenter_rss_mb_ready": round(rss_before / 2**20),
        "segmenter_rss_mb_after": round(rss / 2**20),
        "segmenter_rss_mb_peak": round(peak / 2**20),
        "by_kind": kinds,
    }


def report(results: dict[str, Any]) -> dict[str, Any]:
    out = {**run_facts(), "load_average": os.getloadavg()[0], "segments": 20, **results}
    lines = [
        f"segmenter memory benchmark ({out['machine']}, {out['at']}, load average {out['load_average']:.1f})",
        f"  {out['customers']} customers ({out['granted']} granted), {out['memberships']} memberships,"
        f" loaded and settled in {out['load_and_settle_s']} s,"
        f" drained at {out['drain_events_per_s']} events/s",
        f"  passes paused for live input    {out['passes_paused_s']} s",
        f"  Redis used_memory per customer  {out['redis_bytes_per_customer']} bytes (target <= 400)",
        f"  member sets per membership      {out['redis_bytes_per_membership_of_member_sets']} bytes",
        f"  keys per customer               {out['redis_keys_per_customer']}",
        f"  segmenter RSS                   {out['segmenter_rss_mb_ready']} (ready) ->"
        f" {out['segmenter_rss_mb_after']} MB (peak {out['segmenter_rss_mb_peak']} MB;"
        " target < 1 GB at 1M customers)",
        "  MEMORY USAGE by kind of key (bytes a customer):",
    ]
    for kind, facts in out["by_kind"].items():
        encodings = ", ".join(f"{k[4:]} {v}" for k, v in facts.items() if k.startswith("enc_"))
        lines.append(
            f"    {kind:<28} {facts['keys']:>9} keys {facts['bytes'] / out['customers']:8.1f}  ({encodings})"
        )
    print("\n".join(lines))  # noqa: T201 - the benchmark's report
    return out


def main() -> int:
    out = report(seg.on_private_stack("memory", measure))
    write_results("segmenter-memory", out)
    print(json.dumps({k: v for k, v in out.items() if k != "by_kind"}))  # noqa: T201
    return 0


if __name__ == "__main__":
    sys.exit(main())
