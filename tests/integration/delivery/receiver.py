"""A webhook receiver as a process of its own on a free port (tests/integration/delivery/webhook.py),
and the test's handle on it: start, control, kill, and what it saw."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

from shared.embedded import free_port
from tests.integration.delivery.webhook import read_log
from tests.support import http_client, wait_for


class Receiver:
    """The test's handle: start, control, kill (down: connections refused) and read what came."""

    def __init__(self, secret: str, log_path: Path, fail_first: int = 0, status: int = 503) -> None:
        self.secret, self.log_path, self.port = secret, log_path, free_port()
        self.control: dict[str, Any] = {"fail_first": fail_first, "status": status}
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self) -> Receiver:
        """Start (or start again, on the same port, with the same log and control)."""
        argv = [sys.executable, "-m", "tests.integration.delivery.webhook", str(self.port), self.secret]
        self.process = subprocess.Popen([*argv, str(self.log_path)])
        wait_for(self._up, what="the receiver to listen")
        self.set(**self.control)
        return self

    def _up(self) -> bool:
        try:
            return http_client.put(f"http://127.0.0.1:{self.port}/_control", json={}).status_code == 204
        except httpx.TransportError:
            return False

    def set(self, **control: Any) -> None:
        self.control |= {k: v for k, v in control.items() if k != "hang"}
        http_client.put(f"http://127.0.0.1:{self.port}/_control", json=control).raise_for_status()

    @property
    def waiting(self) -> int:
        """Requests held unanswered by `hang`."""
        response = http_client.get(f"http://127.0.0.1:{self.port}/_control")
        return int(response.raise_for_status().json()["waiting"])

    @property
    def attempts(self) -> list[dict[str, Any]]:
        return read_log(self.log_path)

    def bodies(self) -> list[dict[str, Any]]:
        """What was accepted, once per idempotency key, in arrival order."""
        accepted: dict[str, dict[str, Any]] = {}
        for attempt in self.attempts:
            if attempt["status"] == 200:
                accepted.setdefault(attempt["key"], attempt["body"])
        return list(accepted.values())

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    stop = kill
