"""Segmenter rebuild benchmark: how long a worker holds back `joined` after Redis lost its data,
and how fast its rebuild replays `customer.events`, beside the live path's first-event rate over
the same records in the same run.

Starts its own embedded broker and its own Redis (a free port, so its FLUSHDB touches nothing
else), and the segmenter with bench_segmenter's 20 segments. BENCH_REBUILD_EVENTS events
(default 100,000) over BENCH_REBUILD_CUSTOMERS customers (default 20,000) are drained by the
running segmenter (the floor: the live path taking them as first events), and the members of
every segment are counted. Then Redis is flushed, and the bench times from the FLUSHDB: the
worker noticing the loss (`segwarden_segmenter_redis_rebuilds_total` going up), the replay's end
(`segwarden_segmenter_rebuild_events_replayed_total` reaching the events sent; the feature drop
and the consent load come before it), and the end of the rebuild
(`segwarden_segmenter_redis_rebuilding` back to 0 and `/readyz` 200: from then on joins are
announced again); then the members are counted again.
Writes bench/results/segmenter-rebuild.json.
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
from aiokafka import AIOKafkaProducer

from bench import bench_segmenter as seg
from bench.bench_segmenter_memory import memberships
from bench.common import metric_total, ready, run_facts, write_results
from services.segmenter.settings import SegmenterSettings

EVENTS = int(os.environ.get("BENCH_REBUILD_EVENTS", "100000"))
CUSTOMERS = int(os.environ.get("BENCH_REBUILD_CUSTOMERS", "20000"))
REBUILDS = "segwarden_segmenter_redis_rebuilds_total"
REBUILDING = "segwarden_segmenter_redis_rebuilding"
REPLAYED = "segwarden_segmenter_rebuild_events_replayed_total"


async def send_events(producer: AIOKafkaProducer, topic: str) -> None:
    rng = random.Random(7)
    for _ in range(EVENTS):
        event = seg.random_event(rng, f"r-{rng.randrange(CUSTOMERS)}")
        await producer.send(topic, event.to_bytes(), key=event.customer_id.encode())
    await producer.flush()


async def until(check: Any, timeout: float, what: str, every: float = 0.05) -> float:
    """Poll `check` until it holds; the perf_counter when it first did."""
    deadline = time.monotonic() + timeout
    while not await asyncio.to_thread(check):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not reached within {timeout:.0f}s")
        await asyncio.sleep(every)
    return time.perf_counter()


async def measure(settings: SegmenterSettings, workdir: Path, redis_url: str) -> dict[str, Any]:
    bootstrap, prefix = settings.kafka_bootstrap_servers, settings.topic_prefix
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    namespace = f"sw:{prefix}"
    producer = await seg.producer_with_definitions(bootstrap, prefix)
    segmenter = None
    try:
        segmenter = await asyncio.to_thread(
            seg.start_segmenter, bootstrap, prefix, workdir / "data", workdir / "segmenter.log", redis_url
        )
        url = segmenter.url
        await send_events(producer, prefix + "customer.events")
        drain = await seg.drain_rate(segmenter, EVENTS)
        # Settled: nothing left to announce (every outbox published, so gone).
        await until(
            lambda: next(client.scan_iter(f"{namespace}*:outbox", count=10_000), None) is None, 120, "rest"
        )
        members_before = memberships(client, namespace)
        rebuilds = metric_total(url, REBUILDS)
        replayed = metric_total(url, REPLAYED)
        flushed = time.perf_counter()
        client.flushdb()
        noticed = await until(lambda: metric_total(url, REBUILDS) > rebuilds, 60, "the loss noticed")
        # Every event is replayed (none is erased): then the rebuild decides and announces.
        limit = max(300.0, EVENTS / 100)
        replay_done = await until(
            lambda: metric_total(url, REPLAYED) - replayed >= EVENTS, limit, "the replay"
        )
        done = await until(lambda: metric_total(url, REBUILDING) == 0 and ready(url), limit, "the rebuild")
        replayed = metric_total(url, REPLAYED) - replayed
        members_after = memberships(client, namespace)
    finally:
        if segmenter is not None:
            await asyncio.to_thread(segmenter.stop, 15)
        await producer.stop()
        client.close()
    rebuild_s, replay_s = done - noticed, replay_done - noticed
    return {
        "events": EVENTS,
        "customers": CUSTOMERS,
        "first_event_drain_per_s": round(drain),
        "noticed_after_s": round(noticed - flushed, 2),
        "rebuild_s": round(rebuild_s, 2),
        "replay_s": round(replay_s, 2),  # with the feature drop and the consent load before it
        "after_replay_s": round(done - replay_done, 2),  # membership decided again, then reconciled
        "joins_held_back_s": round(done - flushed, 2),
        "events_replayed": int(replayed),
        "replay_per_s": round(replayed / max(1e-9, replay_s)),
        "rebuild_per_s": round(replayed / max(1e-9, rebuild_s)),
        "rebuild_to_drain": round(replayed / max(1e-9, rebuild_s) / max(1e-9, drain), 2),
        "memberships_before": members_before,
        "memberships_after": members_after,
    }


def report(results: dict[str, Any]) -> dict[str, Any]:
    out = {**run_facts(), "load_average": os.getloadavg()[0], "segments": 20, **results}
    lines = [
        f"segmenter rebuild benchmark ({out['machine']}, {out['at']},"
        f" load average {out['load_average']:.1f})",
        f"  {out['events']} events over {out['customers']} customers; first-event drain"
        f" {out['first_event_drain_per_s']:,} events/s (the floor)",
        f"  after FLUSHDB: loss noticed in {out['noticed_after_s']} s, rebuilt in {out['rebuild_s']} s,"
        f" joins held back {out['joins_held_back_s']} s in all",
        f"  of the rebuild: to the replay's end {out['replay_s']} s, after it {out['after_replay_s']} s",
        f"  replayed {out['events_replayed']:,} events: {out['replay_per_s']:,} events/s to the replay's end,"
        f" {out['rebuild_per_s']:,} events/s over the whole rebuild ({out['rebuild_to_drain']}x the drain)",
        f"  memberships before {out['memberships_before']:,}, after {out['memberships_after']:,}",
    ]
    print("\n".join(lines))  # noqa: T201 - the benchmark's report
    return out


def main() -> int:
    out = report(seg.on_private_stack("rebuild", measure))
    write_results("segmenter-rebuild", out)
    print(json.dumps(out))  # noqa: T201
    return 0


if __name__ == "__main__":
    sys.exit(main())
