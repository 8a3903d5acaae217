"""Scale-out: the segmenter's steady-state events/s with one worker and with two, beside a bare pipe.

Starts its own embedded broker with 6 partitions a topic (so two workers can own 3 each), its own
topic prefix and Redis keys, and measures in one run:
  1. the floor: a bare aiokafka consume-to-produce pipe draining the same kind of backlog;
  2. one worker: after a cold start on a backlog of first events, ROUNDS rounds of STEADY events of
     the same (returning) customers, built before the round and sent faster than it takes them;
  3. two workers: a second one joins; once the group gave each worker 3 partitions, the same rounds;
  4. one worker again: the second one stops; once the first owns all 6, the same rounds.
Each round is timed from the first poll that sees it processed to the last (the workers' counts
together) and reads each worker's CPU from the scheduler: the CPU per event (the segmenter's own
cost, which the machine's load moves far less than the rate) and the time each waited runnable
for a core (every core busy with the other worker, the broker, Redis, this script or another
session's processes). One worker before and after two shows whether the load around the run
stayed alike; the one-worker figure is the median of both phases' rounds.
On a 2-core machine that also runs the broker, Redis and this script, the speed-up says little
about more cores: it shows that the load spreads and that two workers keep up together, not what
a second machine would add; and where other processes compete, two workers also win a larger
share of the cores than one (the scheduler shares them per runnable thread).
Writes bench/results/segmenter_scaleout.json.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer

from bench.bench_segmenter import (
    BACKLOG,
    STEADY,
    backlog_records,
    on_own_stack,
    pipe_rate,
    processed,
    produce_backlog,
    segment_definitions,
    send_records,
    start_segmenter,
)
from bench.common import metric_total, ready, run_facts, scheduled_seconds, wait, write_results
from services.segmenter.settings import SegmenterSettings
from shared.kafka import ensure_topics
from shared.topics import TopicPlan
from tests.support import ServiceProcess

PARTITIONS = 6
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
POLL_S = 0.25  # each poll costs every worker the rendering of its /metrics: not more often
OWNED = "segwarden_segmenter_owned_partitions"
CONFLICTS = "segwarden_segmenter_commit_conflicts_total"


@dataclass
class Worker:
    process: ServiceProcess

    @property
    def url(self) -> str:
        return self.process.url

    def scheduled(self) -> tuple[float, float]:
        assert self.process.process is not None
        return scheduled_seconds(self.process.process.pid)


async def counts(workers: list[Worker]) -> list[float]:
    return [await asyncio.to_thread(processed, w.url) for w in workers]


async def steady_round(
    workers: list[Worker], producer: AIOKafkaProducer, topic: str, seed: int
) -> dict[str, Any]:
    """STEADY events of known customers, sent faster than taken; events/s of `workers` together from
    the first poll that sees the round's events processed until every one is, with the CPU they
    used per event, how long they waited for a core, and each worker's share."""
    records = list(backlog_records(STEADY, seed))  # built before: the sender costs the round little
    before, cpu_before = await counts(workers), [w.scheduled() for w in workers]
    sender = asyncio.create_task(send_records(producer, topic, records))
    first: tuple[float, float] | None = None
    while True:
        done, now = await counts(workers), time.perf_counter()
        if first is None and sum(done) > sum(before):
            first = (now, sum(done))
        if sum(done) >= sum(before) + STEADY:
            break
        await asyncio.sleep(POLL_S)
    await sender
    cpu_after = [w.scheduled() for w in workers]
    assert first is not None
    elapsed = now - first[0]
    ran = [after[0] - b[0] for after, b in zip(cpu_after, cpu_before, strict=True)]
    waited = [after[1] - b[1] for after, b in zip(cpu_after, cpu_before, strict=True)]
    return {
        "events_per_s": (sum(done) - first[1]) / elapsed,
        "seconds": round(elapsed, 2),
        "cpu_ms_per_event": round(1000 * sum(ran) / STEADY, 3),
        "cpu_cores": round(sum(ran) / elapsed, 2),
        # Per worker: of each second of the round, how long it waited runnable for a core.
        "waited_for_cpu": [round(w / elapsed, 2) for w in waited],
        "share": [round((d - b) / STEADY, 3) for d, b in zip(done, before, strict=True)],
    }


async def rounds(
    workers: list[Worker], producer: AIOKafkaProducer, topic: str, seed: int
) -> list[dict[str, Any]]:
    return [await steady_round(workers, producer, topic, seed + i) for i in range(ROUNDS)]


def owned(url: str) -> float:
    return metric_total(url, OWNED)


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
    workers: list[Worker] = []

    def start(name: str) -> Worker:
        return Worker(
            start_segmenter(bootstrap, prefix, workdir / name, workdir / f"{name}.log", partitions=PARTITIONS)
        )

    def settled(expected: list[int]) -> bool:
        """The group gave out the partitions so, and every worker is ready (done announcing what
        its new partitions hold)."""
        return all(ready(w.url) for w in workers) and [owned(w.url) for w in workers] == expected

    try:
        pipe = await pipe_rate(bootstrap, prefix, producer)
        for definition in segment_definitions():
            await producer.send(
                prefix + "segment.definitions", definition.to_bytes(), key=definition.segment_id.encode()
            )
        await produce_backlog(producer, events, BACKLOG, seed=1)
        workers.append(await asyncio.to_thread(start, "one"))
        await asyncio.to_thread(wait, lambda: processed(workers[0].url) >= BACKLOG, 600)
        one = await rounds(workers, producer, events, seed=10)
        workers.append(await asyncio.to_thread(start, "two"))
        await asyncio.to_thread(wait, lambda: settled([3, 3]), 180)
        two = await rounds(workers, producer, events, seed=20)
        conflicts = sum([await asyncio.to_thread(metric_total, w.url, CONFLICTS) for w in workers])
        await asyncio.to_thread(workers.pop().process.stop, 15)
        await asyncio.to_thread(wait, lambda: settled([PARTITIONS]), 180)
        one_again = await rounds(workers, producer, events, seed=30)
    finally:
        await producer.stop()
        for worker in reversed(workers):
            await asyncio.to_thread(worker.process.stop, 15)
    return {"pipe_rate": pipe, "one": one, "two": two, "one_again": one_again, "conflicts": conflicts}


def report(results: dict[str, Any]) -> dict[str, Any]:
    pipe = float(results["pipe_rate"])
    one_rounds = results["one"] + results["one_again"]

    def median(key: str, of: list[dict[str, Any]]) -> float:
        return statistics.median(r[key] for r in of)

    one, two = median("events_per_s", one_rounds), median("events_per_s", results["two"])
    cpu_one = round(median("cpu_ms_per_event", one_rounds), 3)
    cpu_two = round(median("cpu_ms_per_event", results["two"]), 3)
    out = {
        **run_facts(),
        "load_average": os.getloadavg()[0],
        "partitions": PARTITIONS,
        "steady_events_a_round": STEADY,
        "rounds": ROUNDS,
        "pipe_events_per_s": round(pipe),
        "one_worker_events_per_s": round(one),
        "one_worker_before_events_per_s": round(median("events_per_s", results["one"])),
        "one_worker_after_events_per_s": round(median("events_per_s", results["one_again"])),
        "two_workers_events_per_s": round(two),
        "speed_up": round(two / one, 2),
        "one_over_pipe": round(one / pipe, 3),
        "two_over_pipe": round(two / pipe, 3),
        "one_worker_cpu_ms_per_event": cpu_one,
        "two_workers_cpu_ms_per_event": cpu_two,
        "two_workers_commit_conflicts": results["conflicts"],
        "rounds_one": results["one"],
        "rounds_two": results["two"],
        "rounds_one_again": results["one_again"],
    }

    def waits(of: list[dict[str, Any]]) -> str:
        return ", ".join(str(r["waited_for_cpu"]) for r in of)

    lines = [
        f"segmenter scale-out ({out['machine']}, {out['at']}, load average {out['load_average']:.1f})",
        f"  bare pipe            {out['pipe_events_per_s']} events/s",
        f"  one worker           {out['one_worker_events_per_s']} events/s (median of {2 * ROUNDS}:"
        f" {out['one_worker_before_events_per_s']} before two, {out['one_worker_after_events_per_s']}"
        f" after) = {out['one_over_pipe']:.0%} of the pipe, {cpu_one} ms CPU an event",
        f"  two workers          {out['two_workers_events_per_s']} events/s (median of {ROUNDS})"
        f" = {out['two_over_pipe']:.0%} of the pipe, {out['speed_up']}x one worker,"
        f" {cpu_two} ms CPU an event, {results['conflicts']:.0f} commit conflicts",
        "  two workers' shares  " + ", ".join(str(r["share"]) for r in results["two"]),
        "  waited for a core (s a second, per worker): one "
        + waits(results["one"])
        + "; two "
        + waits(results["two"])
        + "; one again "
        + waits(results["one_again"]),
    ]
    print("\n".join(lines))  # noqa: T201 - the benchmark's report
    return out


def main() -> int:
    write_results("segmenter_scaleout", report(on_own_stack(run)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
