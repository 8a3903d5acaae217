"""Fixtures for whole-stack tests: `segwarden up` as a real process tree."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from shared.embedded import free_port, port_open
from tests.support import TANSU_GROUP_TIMING, http_client

SERVICES = ("consent", "segmenter", "audit", "delivery")


@dataclass
class RunningStack:
    process: subprocess.Popen[str]
    env: dict[str, str]
    ports: dict[str, int]
    broker_port: int
    data_dir: Path
    output_path: Path

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}"

    def output(self) -> str:
        return self.output_path.read_text(errors="replace")

    def admin_headers(self) -> dict[str, str]:
        token = (self.data_dir / "admin-token").read_text().strip()
        return {"Authorization": f"Bearer {token}"}

    def ready(self, service: str) -> int:
        try:
            return http_client.get(f"{self.url(service)}/readyz", timeout=8).status_code
        except httpx.HTTPError:
            return 0

    def wait_until(self, predicate, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"segwarden up exited {self.process.returncode}:\n{self.output()}")
            if predicate():
                return
            time.sleep(0.3)
        raise AssertionError(f"timed out waiting for {what}:\n{self.output()[-4000:]}")

    def wait_all_ready(self, timeout: float = 120) -> None:
        self.wait_until(lambda: all(self.ready(s) == 200 for s in SERVICES), timeout, "all /readyz 200")

    def interrupt(self, timeout: float = 20) -> int:
        self.process.send_signal(signal.SIGINT)
        return self.process.wait(timeout)

    def listening_ports(self) -> list[int]:
        return [p for p in [*self.ports.values(), self.broker_port] if port_open("127.0.0.1", p, 0.2)]


def launch_stack(
    tmp_path: Path, topic_prefix: str, redis_url: str, data_dir: Path | None, extra_env: dict[str, str]
) -> RunningStack:
    ports = {service: free_port() for service in SERVICES}
    broker_port = free_port()
    data_dir = data_dir or tmp_path / "data"
    env = {
        **TANSU_GROUP_TIMING,  # `segwarden up` starts its embedded broker on broker_port
        **{k: v for k, v in os.environ.items() if k not in {"AUTH_TOKENS", "KAFKA_BOOTSTRAP_SERVERS"}},
        "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{broker_port}",
        "REDIS_URL": redis_url,
        "TOPIC_PREFIX": topic_prefix,
        "TOPIC_PARTITIONS": "3",
        "DATA_DIR": str(data_dir),
        "CONSENT_PORT": str(ports["consent"]),
        "SEGMENTER_PORT": str(ports["segmenter"]),
        "AUDIT_PORT": str(ports["audit"]),
        "DELIVERY_PORT": str(ports["delivery"]),
        "CONSENT_URL": f"http://127.0.0.1:{ports['consent']}",
        "SEGMENTER_URL": f"http://127.0.0.1:{ports['segmenter']}",
        "AUDIT_URL": f"http://127.0.0.1:{ports['audit']}",
        **extra_env,
    }
    output_path = tmp_path / f"up-{broker_port}.log"
    with output_path.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "segwarden", "up"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )
    return RunningStack(process, env, ports, broker_port, data_dir, output_path)


@pytest.fixture
def stack_launcher(tmp_path: Path, topic_prefix: str, redis_url: str) -> Iterator:
    launched: list[RunningStack] = []

    def launch(data_dir: Path | None = None, extra_env: dict[str, str] | None = None) -> RunningStack:
        stack = launch_stack(tmp_path, topic_prefix, redis_url, data_dir, extra_env or {})
        launched.append(stack)
        return stack

    yield launch
    for stack in launched:
        if stack.process.poll() is None:
            stack.process.send_signal(signal.SIGINT)
            try:
                stack.process.wait(20)
            except subprocess.TimeoutExpired:
                stack.process.kill()
