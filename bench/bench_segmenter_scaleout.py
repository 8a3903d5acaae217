"""Scale-out: the segmenter's steady-state events/s with one worker and with two, beside a bare pipe.

Starts its own embedded broker with 6 partitions a topic (so two workers can own 3 each), its own
topic prefix and Redis keys, and measures in one run:
  1. the floor: a bare aiokafka consume-to-produce pipe draining the same kind of backlog;
  2. one worker: after a cold start on a backlog of first events, ROUNDS rounds of STEADY events of
     the same (returning) customers sent faster than it takes them, each timed from the end of
     sending until the last is processed (as bench_segmenter.py's steady state);
  3. two workers: a second one joins; once the group gave each worker 3 partitions, the same
     rounds, timed by the two workers' processed counts together.
Reports the medians, the speed-up and each worker's share. On a 2-core machine that also runs the
broker, Redis and this script, the speed-up says little about more cores: it shows that the load
spreads and that two workers keep up together, not what a second machine would add.
Writes bench/results/segmenter_scaleout.json.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaProducer

from bench.bench_segmenter import (
    BACKLOG,
    REDIS_URL,
    STEADY,
    pipe_rate,
    processed,
    produce_backlog,
    segment_definitions,
    settings_plan,
    start_segmenter,
)
from bench.common import run_facts, wait, write_results
from services.segmenter.settings import SegmenterSettings
from shared.embedded import EmbeddedBroker, ensure_redis
from shared.kafka import delete_topics, ensure_topics
from shared.topics import TopicPlan
from tests.support import ServiceProcess

PARTITIONS = 6
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
OWNED = "segwarden_segmenter_owned_partitions"


def owned(url: str) -> float:
    for line in httpx.get(f"{url}/metrics", timeout=10).text.splitlines():
        if line.startswith(OWNED + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def total_processed(urls: list[str]) -> list[float]:
    return [await asyncio.to_thread(processed, url) for url in urls]


async def steady_round(urls: list[str], producer: AIOKafkaProducer, topic: str, seed: int) -> dict[str, Any]:
    """STEADY events of known customers, sent faster than taken; events/s of all `urls` together
    from the end of sending until every one is processed, and each worker's share of them."""
    before = await total_processed(urls)
    await produce_backlog(producer, topic, STEADY, seed=seed)
    at_end_of_sending, started = await total_processed(urls), time.perf_counter()
    while sum(done := await total_processed(urls)) < sum(before) + STEADY:
        await asyncio.sleep(0.5)  # /metrics costs the segmenter CPU: poll gently
    elapsed = time.perf_counter() - started
    return {
        "events_per_s": (sum(done) - sum(at_end_of_sending)) / elapsed,
        "backlog_at_start": sum(before) + STEADY - sum(at_end_of_sending),
        "share": [round((d - b) / STEADY, 3) for d, b in zip(done, before, strict=True)],
    }


async def run(bootstrap: str, prefix: str, workdir: Path) -> dict[str, Any]:
    settings = SegmenterSettings(
        kafka_bootstrap_servers=bootstrap, topic_prefix=prefix, topic_partitions=PARTITIONS
    )
    await asyncio.to_thread(ensure_topics, settings)
    pipe_topics = [TopicPlan(prefix + name, PARTITIONS, {}) for name in ("pipe.in", "pipe.out")]
    await asyncio.to_thread(ensure_topics, settings, pipe_topics)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, max_batch_size=256 * 1024)
    await producer.start()
    events = prefix + "customer.events"
    workers: list[ServiceProcess] = []

    def start(name: str) -> ServiceProcess:
        return start_segmenter(
            bootstrap, prefix, workdir / name, workdir / f"{name}.log", partitions=PARTITIONS
        )

    try:
        pipe = await pipe_rate(bootstrap, prefix, producer)
        for definition in segment_definitions():
            await producer.send(
                prefix + "segment.definitions", definition.to_bytes(), key=definition.segment_id.encode()
            )
        await produce_backlog(producer, events, BACKLOG, seed=1)
        workers.append(await asyncio.to_thread(start, "one"))
        await asyncio.to_thread(wait, lambda: processed(workers[0].url) >= BACKLOG, 600)
        one = [await steady_round([workers[0].url], producer, events, seed=10 + i) for i in range(ROUNDS)]
        workers.append(await asyncio.to_thread(start, "two"))
        urls = [w.url for w in workers]
        await asyncio.to_thread(wait, lambda: [owned(u) for u in urls] == [3, 3], 180)
        two = [await steady_round(urls, producer, events, seed=20 + i) for i in range(ROUNDS)]
    finally:
        await producer.stop()
        for worker in reversed(workers):
            await asyncio.to_thread(worker.stop, 15)
    return {"pipe_rate": pipe, "one": one, "two": two}


def report(results: dict[str, Any]) -> dict[str, Any]:
    pipe = float(results["pipe_rate"])
    one = statistics.median(r["events_per_s"] for r in results["one"])
    two = statistics.median(r["events_per_s"] for r in results["two"])
    out = {
        **run_facts(),
        "load_average": os.getloadavg()[0],
        "partitions": PARTITIONS,
        "steady_events_a_round": STEADY,
        "rounds": ROUNDS,
        "pipe_events_per_s": round(pipe),
        "one_worker_events_per_s": round(one),
        "two_workers_events_per_s": round(two),
        "speed_up": round(two / one, 2),
        "one_over_pipe": round(one / pipe, 3),
        "two_over_pipe": round(two / pipe, 3),
        "rounds_one": results["one"],
        "rounds_two": results["two"],
    }
    lines = [
        f"segmenter scale-out ({out['machine']}, {out['at']}, load average {out['load_average']:.1f})",
        f"  bare pipe            {out['pipe_events_per_s']} events/s",
        f"  one worker           {out['one_worker_events_per_s']} events/s (median of {ROUNDS})"
        f" = {out['one_over_pipe']:.0%} of the pipe",
        f"  two workers          {out['two_workers_events_per_s']} events/s (median of {ROUNDS})"
        f" = {out['two_over_pipe']:.0%} of the pipe, {out['speed_up']}x one worker",
        "  two workers' shares  " + ", ".join(str(r["share"]) for r in results["two"]),
    ]
    print("\n".join(lines))  # noqa: T201 - the benchmark's report
    return out


def main() -> int:
    prefix = f"bench{uuid.uuid4().hex[:6]}."
    workdir = Path(tempfile.mkdtemp(prefix="segwarden-bench-"))
    broker = EmbeddedBroker().start()
    redis_process = ensure_redis(REDIS_URL, workdir / "redis")
    try:
        out = report(asyncio.run(run(broker.bootstrap, prefix, workdir)))
    finally:
        settings = SegmenterSettings(kafka_bootstrap_servers=broker.bootstrap, topic_prefix=prefix)
        delete_topics(settings, [p.name for p in settings_plan(settings)])
        broker.stop()
        if redis_process:
            redis_process.terminate()
    write_results("segmenter_scaleout", out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
