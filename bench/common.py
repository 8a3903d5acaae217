"""What every benchmark shares: the facts of the machine a run was on, where its figures go, and how a
service's metrics and a process's CPU are read while it runs."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path

import httpx

from shared.embedded import ensure_redis, free_port
from tests import support

RESULTS_DIR = Path(__file__).resolve().parent / "results"
# One client for every poll of a service's /metrics: httpx.get builds a client (and its TLS context)
# per call, 55 ms of CPU each here, so a bench polling two workers every 0.5 s took a fifth of a
# core from them on a 2-core machine (and half that with one: the poll grew with the workers).
_POLLER = httpx.Client(timeout=10)


def run_facts() -> dict[str, object]:
    """Where and when: the first keys of every report, since a figure means little without them."""
    return {
        "machine": f"{platform.node()} ({os.cpu_count()} cores, Python {platform.python_version()})",
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def write_results(name: str, results: Mapping[str, object]) -> Path:
    """`bench/results/<name>.json` (not committed: docs/benchmarks.md holds the figures that count)."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps(results, indent=2))
    return path


def wait(check: Callable[[], bool], timeout: float) -> None:
    """Poll `check` until it holds; a service not answering yet counts as not yet."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"gave up after {timeout}s")


def metric_total(url: str, name: str) -> float:
    """tests.support.metric_total through the one polling client; `name` with its labels
    (`name{topic="t"}`) reads that one series."""
    return support.metric_total(url, name, _POLLER)


def histogram_buckets(url: str, name: str) -> dict[float, float]:
    """A histogram's cumulative bucket counts on `url`/metrics, by upper bound (+Inf as inf)."""
    text = _POLLER.get(f"{url}/metrics").text
    head = f'{name}_bucket{{le="'
    buckets = {}
    for line in text.splitlines():
        if line.startswith(head):
            bound, _, count = line[len(head) :].partition('"} ')
            buckets[float(bound)] = float(count)
    return buckets


def bucket_quantile(before: Mapping[float, float], after: Mapping[float, float], q: float) -> float | None:
    """The upper bound of the bucket holding quantile `q` of what was observed between two readings
    of `histogram_buckets` (None when nothing was)."""
    bounds = sorted(after)
    counts = [after[b] - before.get(b, 0.0) for b in bounds]
    if not counts or counts[-1] <= 0:
        return None
    return next(b for b, n in zip(bounds, counts, strict=True) if n >= q * counts[-1])


def ready(url: str) -> bool:
    return _POLLER.get(f"{url}/readyz").status_code == 200


def scheduled_seconds(pid: int) -> tuple[float, float]:
    """Seconds that process `pid` (all its threads, Linux) has run on a CPU, and waited runnable for
    one: the second is the time every core was busy with other processes (or its own other threads)."""
    ran = waited = 0
    for stat in Path(f"/proc/{pid}/task").glob("*/schedstat"):
        try:
            on_cpu, on_queue, _ = stat.read_text().split()
        except (OSError, ValueError):  # a thread ended meanwhile
            continue
        ran, waited = ran + int(on_cpu), waited + int(on_queue)
    return ran / 1e9, waited / 1e9


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (all its threads; Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def own_redis(data_dir: Path) -> tuple[subprocess.Popen[bytes], str]:
    """A redis-server of the bench's own, answering: nothing answers on a fresh free port, so
    ensure_redis starts one (its CPU and INFO are then the bench's alone)."""
    url = f"redis://127.0.0.1:{free_port()}/0"
    process = ensure_redis(url, data_dir)
    assert process is not None
    return process, url
