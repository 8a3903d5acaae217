"""CPU of one customer's commit of 1,000 membership changes (the commit step of an opt-out from
1,000 segments), in the segmenter's process and in its Redis, for comparing two builds.

`python -m bench.segmenter_commit_cpu` commits 1,000 joins and then 1,000 leaves of one customer,
ROUNDS times each, through `RedisCustomerStore.commit_many` on a redis-server of its own, and
prints the median of the client's CPU per commit (`time.process_time`) and redis-server's CPU
over all of them divided by their number (/proc counts in clock ticks, 10 ms: too coarse for
one commit), the first WARMUP commits left out. Run it in each build's tree, alternately.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import redis.asyncio as aioredis

from bench.common import cpu_seconds, own_redis, run_facts
from services.segmenter.adapters.redis_keys import KeyLayout
from services.segmenter.adapters.redis_store import RedisCustomerStore
from services.segmenter.domain.membership import MembershipChange
from shared.events import MembershipChanged
from tests.support import TEST_PSEUDONYM_KEY

SEGMENTS = 1_000
ROUNDS = 30
WARMUP = 4
ACTIONS: tuple[Literal["joined", "left"], ...] = ("joined", "left")


def message(segment_id: str, action: Literal["joined", "left"]) -> str:
    """A membership message as the outbox holds it (its size is what the commit feels)."""
    reason: Literal["rule_matched", "consent_withdrawn"] = (
        "rule_matched" if action == "joined" else "consent_withdrawn"
    )
    return MembershipChanged(
        event_id=str(uuid.uuid4()),
        segment_id=segment_id,
        customer_id="c-1",
        action=action,
        reason=reason,
        cause_event_id=None,
        cause_at=None,
        at=datetime.now(UTC),
    ).model_dump_json()


async def commits(url: str, redis_pid: int) -> tuple[list[float], float]:
    client = aioredis.Redis.from_url(url, decode_responses=True)
    store = RedisCustomerStore(client, KeyLayout("sw:bench."), TEST_PSEUDONYM_KEY)
    segments = [f"seg-{i}" for i in range(SEGMENTS)]
    client_cpu: list[float] = []
    try:
        for round_ in range(ROUNDS):
            if round_ * len(ACTIONS) == WARMUP:
                redis_started = cpu_seconds(redis_pid)
            for action in ACTIONS:
                snapshot = await store.read("c-1")
                pending = [(MembershipChange(s, action, "rule", ()), message(s, action)) for s in segments]
                started = time.process_time()
                [result] = await store.commit_many([(snapshot, pending)], time.time())
                client_cpu.append(time.process_time() - started)
                assert result is not None and len(result.applied) == SEGMENTS
                await client.delete(store.keys.outbox("c-1"))
        redis_cpu = (cpu_seconds(redis_pid) - redis_started) / (len(client_cpu) - WARMUP)
    finally:
        await client.aclose()  # type: ignore[attr-defined]  # types-redis predates aclose
    return client_cpu[WARMUP:], redis_cpu


def main() -> None:
    with tempfile.TemporaryDirectory() as workdir:
        process, url = own_redis(Path(workdir))
        try:
            client_cpu, redis_cpu = asyncio.run(commits(url, process.pid))
        finally:
            process.terminate()
            process.wait(10)
    medians = {
        "client_ms_per_commit": round(statistics.median(client_cpu) * 1000, 2),
        "redis_ms_per_commit": round(redis_cpu * 1000, 2),
    }
    print(json.dumps({**run_facts(), **medians}))  # noqa: T201


if __name__ == "__main__":
    main()
