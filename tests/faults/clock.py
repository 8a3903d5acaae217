"""A wall clock a scenario steps while the process runs: libfaketime preloaded into it, reading its
offset from a file (re-read at most every second), so the step needs no restart."""

from __future__ import annotations

from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path

from shared.events import utcnow
from tests.faults.stack import FaultLog, Worker
from tests.support import http_client, libfaketime, wait_for


class SteppedClock:
    def __init__(self, path: Path, faults: FaultLog) -> None:
        self.path = path
        self.faults = faults
        path.write_text("+0\n")  # the real time until the step

    def env(self) -> dict[str, str]:
        """For the process whose clock this is. Only the wall clock moves: asyncio's timers and the
        services' intervals run on the monotonic clock, as a real step (NTP, a VM resume) leaves it."""
        return {
            "LD_PRELOAD": libfaketime(),
            "FAKETIME_TIMESTAMP_FILE": str(self.path),
            "FAKETIME_CACHE_DURATION": "1",
            "FAKETIME_DONT_FAKE_MONOTONIC": "1",
            "NO_FAKE_STAT": "1",
        }

    def step_back(self, worker: Worker, by: timedelta) -> None:
        """Step the running worker's wall clock back by `by` and wait until it shows in its answers
        (the HTTP `Date` header, from the process's own clock)."""
        self.path.write_text(f"-{int(by.total_seconds())}s\n")

        def behind() -> bool:
            return utcnow() - _server_time(worker) > by / 2

        wait_for(behind, 10, f"{worker.service.name}'s clock to step back", every=0.2)
        self.faults.add(f"{worker.service.name} on :{worker.service.port} wall clock stepped back {by}")


def _server_time(worker: Worker) -> datetime:
    response = http_client.get(f"{worker.url}/healthz", timeout=3)
    return parsedate_to_datetime(response.headers["date"])
