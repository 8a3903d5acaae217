"""The segmenter benchmark's memory phase: Redis bytes per customer and per membership, and RSS.

With BENCH_CUSTOMERS=N, bench_segmenter.py sends N new customers one event each (half of them
granted marketing_email first, so they also join consent-gated segments) to the running
segmenter, waits until it processed them, and measures with MEMORY USAGE: every key of a sample
of the customers, and the shared keys (segment member sets, the per-partition known, activity
and expiry sets) divided among all customers. Redis is shared with other work, so nothing is read
from INFO. The segmenter's RSS is read from /proc before and after.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import redis

SAMPLE = 1_000


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def redis_bytes(url: str, prefix: str, customers: list[str], partitions: int) -> dict[str, Any]:
    """Bytes per customer (its own keys, sampled, plus its share of the shared keys) and per
    membership (the member sets' bytes over their members)."""
    client = redis.Redis.from_url(url, decode_responses=True)
    ns = f"sw:{prefix}"
    sample = random.Random(7).sample(customers, min(SAMPLE, len(customers)))
    own = 0
    for customer in sample:
        for key in client.scan_iter(f"{ns}{{c:{customer}}}:*", count=100):
            own += client.memory_usage(key, samples=0) or 0
    member_keys = list(client.scan_iter(f"{ns}seg:*:members", count=1000))
    members = sum(client.scard(k) for k in member_keys)
    member_bytes = sum(client.memory_usage(k, samples=0) or 0 for k in member_keys)
    shared = [
        f"{ns}{kind}:{p}" for kind in ("known", "activity", "consent-expiry") for p in range(partitions)
    ]
    shared_bytes = sum(client.memory_usage(k, samples=0) or 0 for k in shared if client.exists(k))
    known = sum(client.scard(f"{ns}known:{p}") for p in range(partitions))
    client.close()
    per_customer = own / len(sample) + (member_bytes + shared_bytes) / max(1, known)
    return {
        "customers_known": known,
        "memberships": members,
        "bytes_per_customer": round(per_customer),
        "own_keys_bytes_per_customer": round(own / len(sample)),
        "bytes_per_membership": round(member_bytes / max(1, members)),
    }
