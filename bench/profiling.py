"""The benchmarks' profiler: py-spy samples of a running service, summed into CPU per event by part.

Each sample (a stack of one thread on CPU; py-spy leaves idle ones out) is charged to the part of
the innermost frame that belongs to one of PARTS, so a Redis call made by the membership code
counts as the Redis client's, and standard-library frames (json, datetime) count for their caller.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections import Counter
from pathlib import Path

RATE_HZ = 250
# Part -> path fragments of its frames, tried in this order for each frame.
PARTS = [
    ("pydantic (decode, encode)", ("pydantic",)),
    ("redis client (pack, parse)", ("/redis/", "hiredis")),
    ("prometheus metrics", ("prometheus_client",)),
    ("faust (consumer, stream)", ("/faust/", "/mode/")),
    ("aiokafka (fetch, produce)", ("/aiokafka/", "/kafka/")),
    ("membership (commit, publish)", ("segmenter/membership_service", "segmenter/adapters/kafka_publisher")),
    ("rule evaluation", ("segmenter/domain/", "segmenter/rules/")),
    (
        "event handling",
        ("segmenter/handlers", "segmenter/adapters/redis_store", "segmenter/adapters/kafka_events"),
    ),
    ("segmenter, other", ("services/", "shared/")),
    ("asyncio loop", ("asyncio/", "uvloop")),
]


def record(pid: int, seconds: float, keep: Path | None = None) -> tuple[Counter[str], float]:
    """Sample `pid` (all threads) for `seconds`; the samples per part and the seconds covered.
    The collapsed stacks are copied to `keep` (to read what a part holds)."""
    binary = os.environ.get("PY_SPY") or shutil.which("py-spy")
    if binary is None:
        raise RuntimeError("BENCH_PROFILE=1 needs py-spy (pip install py-spy; PY_SPY names the binary)")
    out = Path(tempfile.mkdtemp(prefix="segwarden-profile-")) / "stacks.txt"
    subprocess.run(
        [
            binary,
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(int(seconds)),
            "--rate",
            str(RATE_HZ),
            "--format",
            "raw",
            "--threads",
            "--nonblocking",
            "--output",
            str(out),
        ],
        check=True,
        capture_output=True,
    )
    if keep is not None:
        keep.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(out, keep)
    return parts(out.read_text()), float(int(seconds))


def parts(collapsed: str) -> Counter[str]:
    """Samples per part of py-spy's collapsed stacks (`frame;frame;... count`, leaf last)."""
    counts: Counter[str] = Counter()
    for line in collapsed.splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        counts[_part(stack.split(";"))] += int(n)
    return counts


def _part(frames: list[str]) -> str:
    for frame in reversed(frames):
        for name, fragments in PARTS:
            if any(f in frame for f in fragments):
                return name
    return "other (threads, interpreter)"


def per_event(sampled: tuple[Counter[str], float], events_per_s: float) -> dict[str, float]:
    """Microseconds of CPU per event by part (largest first), and their total."""
    counts, seconds = sampled
    events = events_per_s * seconds
    if events <= 0:
        return {}
    us = {name: n / RATE_HZ / events * 1e6 for name, n in counts.most_common()}
    return {**{k: round(v, 1) for k, v in us.items()}, "total": round(sum(us.values()), 1)}
