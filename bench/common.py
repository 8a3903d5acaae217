"""What every benchmark shares: the facts of the machine a run was on, and where its figures go."""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path

import httpx

RESULTS_DIR = Path(__file__).resolve().parent / "results"


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
