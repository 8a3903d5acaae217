"""CPU per event of the segmenter and its Redis in the steady state, for comparing two builds.

`python -m bench.segmenter_cpu [TREE ...]` runs, for each source tree in turn (default: this one),
bench_segmenter's stack on a broker and a Redis of the run's own (so redis-server's CPU is the
segmenter's alone): the 20 segments, the 10,000 first events drained, then ROUNDS rounds of
STEADY prebuilt events of the returning customers, each timed from before sending until the last
is processed. Per round it reads utime+stime of the segmenter, redis-server and the broker from
/proc around the round and prints µs of CPU per event and the events/s. Naming the trees of two
builds alternates them (`BENCH_CPU_PAIRS` times), so a machine shared with other work loads both
alike; compare the ratios of neighbouring runs, not absolute figures across an hour.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer

from bench import profiling
from bench.bench_segmenter import (
    BACKLOG,
    PARTITIONS,
    STEADY,
    backlog_records,
    drain_rate,
    processed,
    produce_backlog,
    segment_definitions,
    send_records,
    start_segmenter,
)
from bench.common import cpu_seconds, own_redis
from services.segmenter.settings import SegmenterSettings
from shared.embedded import EmbeddedBroker
from shared.kafka import ensure_topics

ROUNDS = int(os.environ.get("BENCH_CPU_ROUNDS", "3"))
PAIRS = int(os.environ.get("BENCH_CPU_PAIRS", "3"))
# A path: py-spy's collapsed stacks of the segmenter for 8 s of each run's first round (bench/profiling.py).
PROFILE_TO = os.environ.get("BENCH_CPU_PROFILE")


async def rounds(tree: Path, bootstrap: str, redis_url: str, pids: dict[str, int]) -> list[dict[str, float]]:
    prefix = f"cpu{uuid.uuid4().hex[:6]}."
    settings = SegmenterSettings(
        kafka_bootstrap_servers=bootstrap, topic_prefix=prefix, topic_partitions=PARTITIONS
    )
    await asyncio.to_thread(ensure_topics, settings)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, max_batch_size=256 * 1024)
    await producer.start()
    workdir = Path(tempfile.mkdtemp(prefix="segwarden-cpu-"))
    try:
        for definition in segment_definitions():
            await producer.send(
                prefix + "segment.definitions", definition.to_bytes(), key=definition.segment_id.encode()
            )
        await produce_backlog(producer, prefix + "customer.events", BACKLOG, seed=1)
        os.chdir(tree)  # `-m segwarden` imports the tree it starts in
        os.environ["PYTHONPATH"] = str(tree)
        segmenter = await asyncio.to_thread(
            # A first start replays the backlog before it is ready: minutes on a loaded machine.
            start_segmenter,
            bootstrap,
            prefix,
            workdir / "data",
            workdir / "segmenter.log",
            redis_url,
            900,
        )
        try:
            assert segmenter.process is not None
            pids = {**pids, "segmenter": segmenter.process.pid}
            await drain_rate(segmenter, BACKLOG)
            out = []
            for n in range(ROUNDS):
                records = list(backlog_records(STEADY, seed=10 + n))
                before = await asyncio.to_thread(processed, segmenter.url)
                cpu = {name: cpu_seconds(pid) for name, pid in pids.items()}
                started = time.perf_counter()
                if PROFILE_TO and n == 0:
                    stacks = Path(f"{PROFILE_TO}.{tree.name}.{prefix}txt")
                    profile = asyncio.create_task(
                        asyncio.to_thread(profiling.record, pids["segmenter"], 8, stacks)
                    )
                await send_records(producer, prefix + "customer.events", records)
                while await asyncio.to_thread(processed, segmenter.url) < before + STEADY:
                    await asyncio.sleep(0.2)
                wall = time.perf_counter() - started
                if PROFILE_TO and n == 0:
                    print(json.dumps(dict((await profile)[0].most_common())), flush=True)  # noqa: T201
                used = {name: cpu_seconds(pid) - cpu[name] for name, pid in pids.items()}
                out.append(
                    {f"{name}_us": round(s / STEADY * 1e6, 1) for name, s in used.items()}
                    | {"events_per_s": round(STEADY / wall)}
                )
            return out
        finally:
            await asyncio.to_thread(segmenter.stop, 15)
    finally:
        await producer.stop()


def run_tree(tree: Path) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="segwarden-cpu-stack-"))
    broker = EmbeddedBroker().start()
    redis_process, redis_url = own_redis(workdir / "redis")
    try:
        assert broker.process is not None
        pids = {"redis": redis_process.pid, "broker": broker.process.pid}
        started = time.strftime("%H:%M:%S", time.gmtime())
        load = os.getloadavg()[0]
        measured = asyncio.run(rounds(tree, broker.bootstrap, redis_url, pids))
    finally:
        broker.stop()
        redis_process.terminate()
    git = ["git", "-C", str(tree), "rev-parse", "--short", "HEAD"]
    commit = subprocess.run(git, capture_output=True, text=True).stdout.strip() or tree.name
    return {"tree": str(tree), "commit": commit, "utc": started, "load": load, "rounds": measured}


def main() -> int:
    trees = [Path(t).resolve() for t in sys.argv[1:]] or [Path.cwd()]
    for _ in range(PAIRS if len(trees) > 1 else 1):
        for tree in trees:
            run = run_tree(tree)
            median = statistics.median(r["segmenter_us"] for r in run["rounds"])
            print(json.dumps(run | {"segmenter_us_median": median}), flush=True)  # noqa: T201
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
