"""`segwarden up`: broker, Redis and the four services as supervised child processes."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

import httpx
import typer

from shared.auth import admin_token_path, ensure_admin_token
from shared.embedded import EmbeddedBroker, InfrastructureError, bootstrap_reachable, ensure_redis
from shared.files import private_directory
from shared.kafka import ensure_topics
from shared.settings import ServiceSettings

log = logging.getLogger(__name__)

SERVICE_PORTS = {
    "consent": ("CONSENT_PORT", 8001),
    "segmenter": ("SEGMENTER_PORT", 8002),
    "audit": ("AUDIT_PORT", 8003),
    "delivery": ("DELIVERY_PORT", 8004),
}
READY_TIMEOUT_S = 120.0
STOP_GRACE_S = 5.0


@dataclass
class Child:
    """One service process and where its output goes."""

    name: str
    port: int
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    ready: bool = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def last_lines(self, count: int = 20) -> str:
        try:
            with self.log_path.open(errors="replace") as handle:
                return "".join(deque(handle, maxlen=count))
        except OSError:
            return "(no log)"


@dataclass
class Stack:
    settings: ServiceSettings
    children: list[Child] = field(default_factory=list)
    broker: EmbeddedBroker | None = None
    redis_process: subprocess.Popen[bytes] | None = None
    stopping: bool = False

    def start_infrastructure(self) -> str:
        """Start the broker and Redis when needed; return the bootstrap servers to use."""
        bootstrap = self.settings.kafka_bootstrap_servers
        if not bootstrap_reachable(bootstrap):
            explicit = "KAFKA_BOOTSTRAP_SERVERS" in os.environ
            host, _, port = self.settings.bootstrap_servers[0].rpartition(":")
            if explicit and host not in {"127.0.0.1", "localhost"}:
                raise InfrastructureError(f"KAFKA_BOOTSTRAP_SERVERS: no broker answers at {bootstrap}")
            self.broker = EmbeddedBroker(int(port), self.settings.data_dir / "logs" / "broker.log").start()
            bootstrap = self.broker.bootstrap
            typer.echo(f"embedded broker (Tansu, in memory) on {bootstrap}")
        else:
            typer.echo(f"using the Kafka cluster at {bootstrap}")
        self.redis_process = ensure_redis(self.settings.redis_url, self.settings.data_dir / "redis")
        if self.redis_process:
            typer.echo(f"started redis-server for {self.settings.redis_url}")
        return bootstrap

    def start_services(self, bootstrap: str) -> None:
        env = {
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "DATA_DIR": str(self.settings.data_dir.resolve()),
        }
        ensure_topics(self.settings.model_copy(update={"kafka_bootstrap_servers": bootstrap}))
        for name, (variable, default) in SERVICE_PORTS.items():
            port = int(os.environ.get(variable, default))
            child = Child(name, port, self.settings.data_dir / "logs" / f"{name}.log")
            with child.log_path.open("ab") as out:
                child.process = subprocess.Popen(
                    [sys.executable, "-m", "segwarden", "serve", name],
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                )
            self.children.append(child)

    def wait_ready(self) -> Child | None:
        """Poll every /readyz until all answer 200; return a child that died meanwhile."""
        deadline = time.monotonic() + READY_TIMEOUT_S
        with httpx.Client(timeout=3.0) as client:
            while not self.stopping and not all(c.ready for c in self.children):
                dead = self.dead_child()
                if dead:
                    return dead
                self.heal_broker()
                for child in self.children:
                    if not child.ready:
                        child.ready = _answers_ready(client, child.url)
                if time.monotonic() > deadline:
                    waiting = ", ".join(c.name for c in self.children if not c.ready)
                    raise InfrastructureError(f"not ready after {READY_TIMEOUT_S:.0f}s: {waiting}")
                time.sleep(0.3)
        return None

    def dead_child(self) -> Child | None:
        return next((c for c in self.children if c.process and c.process.poll() is not None), None)

    def supervise(self) -> int:
        """Run until a signal or a child's death, healing the embedded broker meanwhile."""
        while not self.stopping:
            dead = self.dead_child()
            if dead:
                report_death(dead)
                return 1
            self.heal_broker()
            time.sleep(0.5)
        return 0

    def heal_broker(self) -> None:
        """Restart the embedded broker if it died; its topics were in memory, so create them again."""
        if not (self.broker and self.broker.process and self.broker.process.poll() is not None):
            return
        typer.echo("embedded broker exited; restarting it (its topics were in memory)", err=True)
        time.sleep(1.0)
        self.broker.start()
        ensure_topics(self.settings.model_copy(update={"kafka_bootstrap_servers": self.broker.bootstrap}))

    def stop(self) -> None:
        self.stopping = True
        for child in self.children:
            if child.process and child.process.poll() is None:
                child.process.terminate()
        deadline = time.monotonic() + STOP_GRACE_S
        for child in self.children:
            if child.process:
                try:
                    child.process.wait(max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    child.process.kill()
                    child.process.wait()
        if self.broker:
            self.broker.stop()
        if self.redis_process:
            self.redis_process.terminate()
            self.redis_process.wait(STOP_GRACE_S)


def _answers_ready(client: httpx.Client, url: str) -> bool:
    try:
        return client.get(f"{url}/readyz").status_code == 200
    except httpx.HTTPError:
        return False


def report_death(child: Child) -> None:
    code = child.process.returncode if child.process else None
    typer.echo(f"\n{child.name} exited with code {code}; its last log lines:\n{child.last_lines()}", err=True)


def print_banner(stack: Stack, bootstrap: str) -> None:
    typer.echo("\nsegwarden is up:")
    for child in stack.children:
        typer.echo(f"  {child.name:<10} {child.url}   (API docs: {child.url}/docs)")
    typer.echo(f"  kafka      {bootstrap}")
    typer.echo(f"  redis      {stack.settings.redis_url}")
    if stack.settings.auth_tokens:
        typer.echo("  auth       tokens from AUTH_TOKENS")
    else:
        typer.echo(f"  auth       admin token in {admin_token_path(stack.settings).resolve()}")
    typer.echo(f"  logs       {(stack.settings.data_dir / 'logs').resolve()}")
    typer.echo("Press Ctrl-C to stop.")


def run_stack() -> int:
    settings = ServiceSettings()
    private_directory(settings.ensure_data_dir() / "logs")
    if not settings.auth_tokens:
        ensure_admin_token(settings)
    stack = Stack(settings)

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stack.stopping = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    try:
        bootstrap = stack.start_infrastructure()
        stack.start_services(bootstrap)
        dead = stack.wait_ready()
        if dead:
            report_death(dead)
            return 1
        if stack.stopping:
            return 0
        print_banner(stack, bootstrap)
        return stack.supervise()
    finally:
        typer.echo("stopping segwarden ...")
        stack.stop()
        typer.echo("stopped.")
