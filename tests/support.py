"""Helpers for tests that run services as real processes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import redis
from kafka import KafkaConsumer, TopicPartition

from services.segmenter.adapters import lua
from services.segmenter.adapters.redis_buckets import IndexChange, adding, bucket_count, bucket_key, removing
from services.segmenter.adapters.redis_keys import KeyLayout
from services.segmenter.adapters.redis_store import snapshot_of
from services.segmenter.domain.customer import CustomerSnapshot
from shared.embedded import free_port, redis_answers, start_redis_server
from shared.events import ModelTrained

# One client for the tests' requests: httpx.get builds a client for each call, its TLS context
# included (about 54 ms of CPU on the project's VM), and the suite polls its services thousands of
# times (readiness, metrics, states). No keep-alive, so each request still opens a connection of its
# own, as httpx.get's did: a kept connection could meet a service closing it or gone meanwhile.
http_client = httpx.Client(timeout=5.0, limits=httpx.Limits(max_keepalive_connections=0))
# The pseudonym key of stores the tests build themselves (services load their own).
T = TypeVar("T")
TEST_PSEUDONYM_KEY = b"segwarden-test-pseudonym-key"

PORT_VARIABLES = {
    "consent": "CONSENT_PORT",
    "segmenter": "SEGMENTER_PORT",
    "audit": "AUDIT_PORT",
    "delivery": "DELIVERY_PORT",
}
# A group join on Tansu takes about half the session timeout, in whole seconds (docs/broker.md): 3 s at
# the 6 s default, 1 s at 2 s, and the suite's services join groups about a hundred times.
TANSU_GROUP_TIMING = {"KAFKA_SESSION_TIMEOUT_MS": "2000", "KAFKA_HEARTBEAT_INTERVAL_MS": "400"}


def group_timing(bootstrap: str | None) -> dict[str, str]:
    """Short group timing for the embedded broker; a run on Apache Kafka (KAFKA_BOOTSTRAP_SERVERS set
    for the suite) keeps the defaults, since Kafka refuses a session under 6 s by default."""
    external = bootstrap is None or bootstrap == os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    return {} if external else TANSU_GROUP_TIMING


class ServiceProcess:
    """`segwarden serve NAME` as a subprocess on a free port, its output in a log file."""

    def __init__(self, name: str, env: dict[str, str], log_path: Path) -> None:
        self.name = name
        self.port = int(env.get(PORT_VARIABLES[name], free_port()))
        timing = group_timing(env.get("KAFKA_BOOTSTRAP_SERVERS"))
        self.env = {**timing, **os.environ, **env, PORT_VARIABLES[name]: str(self.port)}
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ServiceProcess:
        with self.log_path.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "segwarden", "serve", self.name],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        return self

    def wait_ready(self, timeout: float = 60.0) -> ServiceProcess:
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise AssertionError(f"{self.name} exited {self.process.returncode}:\n{self.log()}")
            try:
                response = http_client.get(f"{self.url}/readyz", timeout=3)
                if response.status_code == 200:
                    return self
                last = response.text
            except httpx.HTTPError as exc:
                last = repr(exc)
            time.sleep(0.2)
        raise AssertionError(f"{self.name} not ready in {timeout}s: {last}\n{self.log()}")

    def log(self, tail: int = 40) -> str:
        try:
            return "".join(self.log_path.read_text(errors="replace").splitlines(True)[-tail:])
        except OSError:
            return ""

    def kill(self) -> None:
        """SIGKILL: the crash a test wants to survive, and the end of a fixture's process: nothing
        checks a clean exit there, and a clean stop costs seconds (group leaves, faust's shutdown)."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self, timeout: float = 10.0) -> int | None:
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        return self.process.returncode


def libfaketime() -> str:
    """Debian's libfaketime, preloaded (LD_PRELOAD) to fake the wall clock of a service process."""
    found = sorted(Path("/usr/lib").glob("*/faketime/libfaketime.so.1"))
    if not found:
        pytest.fail("libfaketime is missing: run `python -m tests.prepare` (installs Debian's faketime)")
    return str(found[0])


def wait_for(
    check: Callable[[], Any], timeout: float = 30.0, what: str = "condition", every: float = 0.1
) -> Any:
    """Poll `check` until it returns something truthy, and return that; fail naming `what` at the deadline."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class OwnRedis:
    """A redis-server of the test's own on a free port, keeping nothing on disk: the test may flush,
    kill and restart it (never the shared Redis) and a restart loses everything."""

    def __init__(self, data_dir: Path) -> None:
        self.port = free_port()
        self.data_dir = data_dir
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> OwnRedis:
        binary = shutil.which("redis-server")
        assert binary, "tests that lose Redis need redis-server on PATH (make test installs it)"
        self.process = start_redis_server(binary, self.port, self.data_dir)
        wait_for(lambda: self.process is not None and redis_answers(self.url), 10, "the test's redis-server")
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


class RecordedTrainings:
    """An in-memory `TrainingLedger`: the trainings handed to it, in order (the topic's adapter is
    tested with the broker in tests/integration/modeling/test_model_cli.py)."""

    def __init__(self) -> None:
        self.trainings: list[ModelTrained] = []

    async def record(self, training: ModelTrained) -> None:
        self.trainings.append(training)


def present(values: Iterable[T | None]) -> list[T]:
    """`values`, asserting none is None (an unset sequence, a tombstone where none may be)."""
    listed = list(values)
    found = [value for value in listed if value is not None]
    assert len(found) == len(listed), f"a missing value in {listed!r}"
    return found


def read_topic(bootstrap: str, topic: str, count: int) -> list[bytes]:
    """At least `count` values of `topic` from its beginning (kafka-python, no group), and every
    other value the topic held by then: a duplicate already written is among them. Polled until
    both hold (waiting for a quiet spell instead cost every call seconds)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=100)
    try:
        found = wait_for(lambda: consumer.partitions_for_topic(topic), what=f"topic {topic} to exist")
        partitions = [TopicPartition(topic, p) for p in sorted(found)]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        values: list[bytes] = []

        def enough() -> bool:
            for batch in consumer.poll(timeout_ms=200).values():
                values.extend(m.value for m in batch)
            if len(values) < count:
                return False
            ends = consumer.end_offsets(partitions)
            return all(consumer.position(p) >= ends[p] for p in partitions)

        wait_for(enough, what=f"{count} on {topic}")
        return values
    finally:
        consumer.close()


def metric_total(url: str, name: str, client: httpx.Client | None = None) -> float:
    """The sum of every series of metric `name` (all its labels) on `url`/metrics; 0 when none."""
    text = (client.get(f"{url}/metrics") if client else http_client.get(f"{url}/metrics", timeout=10)).text
    series = (name + "{", name + " ")
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(series))


def forget_redis_keys(redis_url: str, prefix: str) -> None:
    """Delete every Redis key of a test's topic prefix (its services' namespace `sw:<prefix>`)."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        for key in client.scan_iter(f"sw:{prefix}*", count=1000):
            client.delete(key)
    finally:
        client.close()


def index_members(client: redis.Redis, head: str) -> set[str]:
    """Every member of a bucketed index (adapters/redis_buckets.py) read synchronously: a segment's
    members (`KeyLayout.members`), the customers known on a partition (`KeyLayout.known`)."""
    buckets = bucket_count(client.hmget(head, ["level", "split"]))  # type: ignore[arg-type]
    with client.pipeline(transaction=False) as pipe:
        for bucket in range(buckets):
            pipe.zrange(bucket_key(head, bucket), 0, -1)
        return {member for bucket in pipe.execute() for member in bucket}


def segment_members(client: redis.Redis, namespace: str, segment: str) -> set[str]:
    return index_members(client, KeyLayout(namespace).members(segment))


def index_add(client: redis.Redis, head: str, member: str, score: float = 0.0) -> None:
    """Put a member in a bucketed index with the segmenter's own script (a test's drift)."""
    _index_update(client, adding(head, {member: score}))


def index_remove(client: redis.Redis, head: str, member: str) -> None:
    _index_update(client, removing(head, [member]))


def _index_update(client: redis.Redis, change: IndexChange) -> None:
    head, ops = change
    client.register_script(lua.INDEX_UPDATE)(keys=[head], args=[json.dumps([ops])])


def index_score(client: redis.Redis, head: str, member: str) -> float | None:
    """The member's score in a bucketed index (None when absent)."""
    [score] = client.register_script(lua.INDEX_SCORES)(keys=[head], args=[member])  # type: ignore[misc]
    return None if score is None else float(score)


def stored_customer(client: redis.Redis, namespace: str, customer: str) -> CustomerSnapshot:
    """A customer's hash in the segmenter's Redis (namespace `sw:<prefix>`), read as the segmenter
    reads it: features, consent, segments and version apart."""
    return snapshot_of(customer, client.hgetall(KeyLayout(namespace).state(customer)).items())
