"""A real Prometheus server (Debian's binary) scrapes the three running services, configured as
docker-compose.yml configures them, and its HTTP API returns the eviction latency histogram after
an opt-out; the alert rules load and evaluate without error."""

from __future__ import annotations

import math
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from shared.embedded import free_port
from tests.deploy.conftest import DEPLOY
from tests.deploy.traffic import opt_out_traffic, start_stack, wait_until
from tests.support import http_client

pytestmark = pytest.mark.slow

HISTOGRAM = "segwarden_segmenter_eviction_latency_seconds"


class PrometheusServer:
    """Debian's prometheus binary on a free port, scraping the given targets every second."""

    def __init__(self, binary: str, targets: dict[str, str], workdir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(path) for path in sorted((DEPLOY / "prometheus/rules").glob("*.yml"))],
            "scrape_configs": [
                {"job_name": job, "static_configs": [{"targets": [target]}]}
                for job, target in targets.items()
            ],
        }
        config_path = workdir / "prometheus.yml"
        config_path.write_text(yaml.safe_dump(config))
        self.log_path = workdir / "prometheus.log"
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [
                    binary,
                    f"--config.file={config_path}",
                    f"--storage.tsdb.path={workdir / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )

    def query(self, promql: str) -> list[dict]:
        response = http_client.get(f"{self.url}/api/v1/query", params={"query": promql}, timeout=10)
        response.raise_for_status()
        return response.json()["data"]["result"]

    def up(self) -> dict[str, str]:
        """`up` per job; a target shows only after its first scrape (discovery batches for ~5 s)."""
        samples = self.query('up{job=~"consent|segmenter|audit|delivery"}')
        return {s["metric"]["job"]: s["value"][1] for s in samples}

    def ready(self) -> bool:
        try:
            return http_client.get(f"{self.url}/-/ready", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)


@pytest.fixture
def prometheus_server(
    prometheus_binary: str, tmp_path: Path
) -> Iterator[Callable[[dict[str, str]], PrometheusServer]]:
    started: list[PrometheusServer] = []

    def launch(targets: dict[str, str]) -> PrometheusServer:
        server = PrometheusServer(prometheus_binary, targets, tmp_path)
        started.append(server)
        deadline = time.monotonic() + 60
        while not server.ready():
            assert server.process.poll() is None, server.log_path.read_text()
            assert time.monotonic() < deadline, "prometheus not ready in 60 s"
            time.sleep(0.2)
        return server

    yield launch
    for server in started:
        server.stop()


async def test_prometheus_scrapes_the_services_and_returns_the_eviction_histogram(
    start_service, compose_env, prometheus_server
) -> None:
    stack = start_stack(start_service, compose_env)
    targets = {name: f"127.0.0.1:{service.port}" for name, service in stack.services.items()}
    prometheus = prometheus_server(targets)
    everyone_up = {"consent": "1", "segmenter": "1", "audit": "1", "delivery": "1"}
    wait_until(lambda: prometheus.up() == everyone_up, 60, "Prometheus to scrape all four", stack)
    await opt_out_traffic(stack)

    def evictions_scraped() -> bool:
        result = prometheus.query(f'{HISTOGRAM}_count{{job="segmenter"}}')
        return bool(result) and float(result[0]["value"][1]) >= 1

    wait_until(evictions_scraped, 60, "Prometheus to scrape an eviction", stack)
    buckets = prometheus.query(f'{HISTOGRAM}_bucket{{job="segmenter"}}')
    everything = [float(s["value"][1]) for s in buckets if s["metric"]["le"] == "+Inf"]
    assert len({s["metric"]["le"] for s in buckets}) > 1 and everything and everything[0] >= 1, buckets
    (p99,) = prometheus.query(f"histogram_quantile(0.99, sum by (le) ({HISTOGRAM}_bucket))")
    assert math.isfinite(float(p99["value"][1])) and float(p99["value"][1]) > 0, p99
    assert prometheus.up() == everyone_up
    rules = http_client.get(f"{prometheus.url}/api/v1/rules", timeout=10).json()["data"]["groups"]
    unhealthy = [r["name"] for g in rules for r in g["rules"] if r["health"] == "err"]
    assert rules and not unhealthy, unhealthy
