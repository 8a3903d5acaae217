"""A scenario's own infrastructure: a redis-server and a Tansu broker that a fault may flush or restart."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import redis

from shared.embedded import EmbeddedBroker, free_port, redis_answers


class OwnRedis:
    """A redis-server on a free port that keeps nothing on disk: a restart loses everything."""

    def __init__(self, data_dir: Path) -> None:
        self.port = free_port()
        self.data_dir = data_dir
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> OwnRedis:
        binary = shutil.which("redis-server")
        assert binary, "the fault suite needs redis-server on PATH"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        command = [
            binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ]
        self.process = subprocess.Popen(
            [*command, "--dir", str(self.data_dir)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 10
        while not redis_answers(self.url):
            assert self.process.poll() is None and time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)

    def restart(self) -> None:
        self.stop()
        self.start()

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, decode_responses=True, socket_timeout=5)

    def flushdb(self) -> None:
        with self.client() as client:
            client.flushdb()


class OwnBroker:
    """The embedded Tansu broker on a fixed port: a restart forgets every topic but keeps the address."""

    def __init__(self, log_path: Path) -> None:
        self.broker = EmbeddedBroker(log_path=log_path)

    @property
    def bootstrap(self) -> str:
        return self.broker.bootstrap

    def start(self) -> OwnBroker:
        self.broker.start()
        return self

    def stop(self) -> None:
        self.broker.stop()

    def restart(self) -> None:
        self.broker.stop()
        self.broker.start()
