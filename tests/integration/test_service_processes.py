"""Every service runs as a real process against the real broker: health, readiness, metrics, OpenAPI."""

from __future__ import annotations

import subprocess
import sys

import pytest

from shared.embedded import free_port
from tests.support import http_client

SERVICES = ["consent", "segmenter", "audit", "delivery"]


@pytest.mark.parametrize("name", SERVICES)
def test_service_serves_operational_endpoints(start_service, name: str) -> None:
    service = start_service(name).wait_ready()
    assert http_client.get(f"{service.url}/healthz").json() == {"status": "ok"}
    assert http_client.get(f"{service.url}/readyz").json()["status"] == "ready"
    metrics = http_client.get(f"{service.url}/metrics")
    assert metrics.status_code == 200 and "segwarden_dependency_up" in metrics.text
    spec = http_client.get(f"{service.url}/openapi.json").json()
    assert "/readyz" in spec["paths"]
    assert http_client.get(f"{service.url}/docs").status_code == 200


@pytest.mark.parametrize(
    ("variable", "value"),
    [("KAFKA_BOOTSTRAP_SERVERS", "no-port-here"), ("REDIS_URL", "http://x"), ("TOPIC_PARTITIONS", "0")],
)
def test_bad_setting_exits_with_one_line_naming_it(service_env, variable: str, value: str) -> None:
    env = {**service_env, variable: value, "CONSENT_PORT": str(free_port())}
    result = subprocess.run(
        [sys.executable, "-m", "segwarden", "serve", "consent"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and variable in lines[0], result.stderr


def test_taken_port_exits_naming_the_port_setting(service_env) -> None:
    import socket

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        env = {**service_env, "AUDIT_PORT": str(port)}
        result = subprocess.run(
            [sys.executable, "-m", "segwarden", "serve", "audit"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 2
    assert f"AUDIT_PORT={port}" in result.stderr.strip().splitlines()[-1]
