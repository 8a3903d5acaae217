"""Two segmenter workers sharing the partitions; one leaves while batches are in flight, so the
survivor's partitions are revoked and reassigned mid-batch and it takes the leaver's over."""

from __future__ import annotations

import threading
from collections.abc import Callable

import httpx

from tests.faults.scenario import Scenario
from tests.support import http_client, wait_for

OWNED = "segwarden_segmenter_owned_partitions"


def owned(url: str) -> float:
    try:
        text = http_client.get(f"{url}/metrics", timeout=5).text
    except httpx.HTTPError:
        return 0.0
    return next((float(line.split()[1]) for line in text.splitlines() if line.startswith(OWNED + " ")), 0.0)


def test_rebalance_mid_batch_with_two_workers(scenario: Callable[..., Scenario]) -> None:
    s = scenario().start(segmenters=2)
    first, second = s.stack.segmenters
    wait_for(lambda: owned(first.url) >= 1 and owned(second.url) >= 1, 60, "the partitions split")
    s.stack.faults.add("partitions split between the two workers", fault=False)

    def leave() -> None:
        # A clean leave takes seconds: beside the workload, so batches are in flight meanwhile.
        threading.Thread(target=s.stack.stop_worker, args=(first,), daemon=True).start()

    s.workload.run(midway=(None, leave))
    wait_for(lambda: owned(second.url) == 3, 60, "the survivor to own every partition")
    s.verify()
