"""One scenario's stack as real processes: its own broker and Redis, a PostgreSQL database,
consent and segmenter workers, and a watcher that restarts a worker a failpoint killed."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from kafka import KafkaAdminClient
from kafka.errors import KafkaError

from shared.embedded import free_port
from tests.conftest import TEST_TOKENS
from tests.faults.infra import OwnBroker
from tests.faults.model import SEGMENTS
from tests.support import OwnRedis, ServiceProcess, http_client, segment_members, stored_customer, wait_for

ADMIN = {"Authorization": "Bearer admin-token-0001"}
# Periodic repair is slow on purpose (production-like): recovery must come from the paths under test,
# not from a sweep or a compliance scan that happens to run within the quiescence bound.
SEGMENTER_ENV = {
    "SEGMENTER_SWEEP_INTERVAL_S": "30",
    "SEGMENTER_COMPLIANCE_INTERVAL_S": "60",
    "SEGMENTER_EVENT_BATCH_WAIT_S": "0.05",
    # Small batches, so phase 1's hundred events make at least eight whatever the pace they are
    # sent at: a failpoint armed for the n-th batch (kill@6) fires by the count, not by the timing
    # (with 500, a faster sender put them into fewer batches and the kill never came).
    "SEGMENTER_EVENT_BATCH_SIZE": "12",
}
REARMS = 5
SEGMENT_IDS = [s.segment_id for s in SEGMENTS]
CONSENT_ENV = {"CONSENT_EXPIRY_INTERVAL_S": "1", "CONSENT_OUTBOX_POLL_INTERVAL_S": "0.5"}


@dataclass
class Worker:
    """A service process of the stack; `failpoints` is the FAILPOINTS it was started with."""

    service: ServiceProcess
    failpoints: str = ""
    managed: bool = True  # the watcher restarts it when a failpoint killed it
    kills: int = 0
    # Says what a kill left in flight ("" for nothing: the kill is re-armed, up to REARMS times).
    in_flight: Callable[[], str] | None = None
    rearms: int = 0

    @property
    def url(self) -> str:
        return self.service.url

    def alive(self) -> bool:
        return self.service.process is not None and self.service.process.poll() is None


@dataclass
class FaultLog:
    """What the scenario did to the stack, in order, for the summary."""

    entries: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)

    def add(self, what: str, fault: bool = True) -> None:
        """A fault (marked `!` in the summary) or a milestone of the scenario."""
        mark = "!" if fault else " "
        self.entries.append(f"{mark} +{time.monotonic() - self.started:5.1f}s {what}")

    def count(self) -> int:
        return sum(e.startswith("!") for e in self.entries)


class FaultStack:
    def __init__(self, tmp: Path, postgres_url: str, prefix: str) -> None:
        self.tmp = tmp
        self.prefix = prefix
        self.postgres_url = postgres_url
        self.broker = OwnBroker(tmp / "broker.log").start()
        self.redis = OwnRedis(tmp / "redis").start()
        self.faults = FaultLog()
        self.unexpected: list[str] = []  # exits no fault caused
        self.arm_probe: Callable[[], str] | None = None  # given to workers started with failpoints
        self.consents: list[Worker] = []
        self.segmenters: list[Worker] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._watcher = threading.Thread(target=self._watch, name="fault-watcher", daemon=True)
        self._watcher.start()

    # -- services ---------------------------------------------------------------------------

    def env(self, name: str, **overrides: str) -> dict[str, str]:
        common = {
            "KAFKA_BOOTSTRAP_SERVERS": self.broker.bootstrap,
            "REDIS_URL": self.redis.url,
            "TOPIC_PREFIX": self.prefix,
            "TOPIC_PARTITIONS": "3",
            "AUTH_TOKENS": ",".join(f"{token}={scopes}" for token, scopes in TEST_TOKENS.items()),
            "INTERNAL_TOKEN": "admin-token-0001",
            "LOG_LEVEL": "INFO",
            # Closed ports: no peer answers the consent export.
            "SEGMENTER_URL": f"http://127.0.0.1:{free_port()}",
            "AUDIT_URL": f"http://127.0.0.1:{free_port()}",
            "DELIVERY_URL": f"http://127.0.0.1:{free_port()}",
        }
        if name == "consent":
            common |= {"CONSENT_DB_URL": self.postgres_url, **CONSENT_ENV}
        else:
            common |= SEGMENTER_ENV
        return {**common, **overrides}

    def start_consent(self, failpoints: str = "", **overrides: str) -> Worker:
        n = len(self.consents)
        data = self.tmp / f"consent-{n}"
        env = self.env("consent", DATA_DIR=str(data), FAILPOINTS=failpoints, **overrides)
        worker = Worker(ServiceProcess("consent", env, self.tmp / f"consent-{n}.log"), failpoints)
        if failpoints:
            self.faults.add(f"consent-{n} started with FAILPOINTS={failpoints}")
        with self._lock:
            self.consents.append(worker)
        return worker

    def start_segmenter(self, failpoints: str = "", **overrides: str) -> Worker:
        n = len(self.segmenters)
        data = self.tmp / f"segmenter-{n}"
        env = self.env("segmenter", DATA_DIR=str(data), FAILPOINTS=failpoints, **overrides)
        worker = Worker(ServiceProcess("segmenter", env, self.tmp / f"segmenter-{n}.log"), failpoints)
        if failpoints:
            worker.in_flight = self.arm_probe
            self.faults.add(f"segmenter-{n} started with FAILPOINTS={failpoints}")
        with self._lock:
            self.segmenters.append(worker)
        return worker

    @property
    def consent(self) -> Worker:
        return self.consents[0]

    @property
    def segmenter(self) -> Worker:
        return next(w for w in self.segmenters if w.managed)

    def workers(self) -> list[Worker]:
        with self._lock:
            return [*self.consents, *self.segmenters]

    def wait_ready(self, timeout: float = 90.0) -> None:
        """Every managed worker answers /readyz 200 (a killed one is restarted by the watcher first)."""

        def ready() -> bool:
            return all(_ready(w) for w in self.workers() if w.managed)

        wait_for(ready, timeout, "every worker ready", every=0.2)
        self.faults.add("every worker ready", fault=False)

    def stop_worker(self, worker: Worker) -> None:
        """A clean stop (SIGTERM) that the watcher leaves alone."""
        worker.managed = False
        worker.service.stop()
        self.faults.add(f"{worker.service.name} on :{worker.service.port} stopped (SIGTERM)")

    def kill_worker(self, worker: Worker, restart: bool = True) -> None:
        """SIGKILL from outside; the watcher restarts it when `restart`."""
        worker.managed = restart
        worker.service.kill()
        self.faults.add(f"{worker.service.name} on :{worker.service.port} SIGKILLed by the test")

    def _watch(self) -> None:
        while not self._stopping.wait(0.2):
            for worker in self.workers():
                process = worker.service.process
                if not worker.managed or process is None or process.poll() is None:
                    continue
                self._restart(worker, process.returncode)

    def _restart(self, worker: Worker, code: int) -> None:
        name = f"{worker.service.name} on :{worker.service.port}"
        if code == -9 and worker.failpoints and worker.in_flight is not None:
            left = worker.in_flight()
            if not left and worker.rearms < REARMS:
                worker.rearms += 1
                self.faults.add(f"{name} SIGKILLed by {worker.failpoints} with nothing in flight; re-armed")
                worker.service.start()
                return
            self.faults.add(f"{name} SIGKILLed by {worker.failpoints}, leaving {left or 'nothing'} in flight")
        if code == -9:
            worker.kills += 1
            self.faults.add(f"{name} died by SIGKILL (failpoint {worker.failpoints or 'none'}); restarted")
        else:
            self.unexpected.append(f"{name} exited with {code}; see {worker.service.log_path.name}")
            self.faults.add(f"{name} exited with {code} (not a failpoint); restarted")
        # Restarted without FAILPOINTS: a failpoint fires in the first life only.
        worker.service.env.pop("FAILPOINTS", None)
        worker.failpoints = ""
        worker.service.start()

    # -- faults on the infrastructure ---------------------------------------------------------

    def in_flight(self, customers: list[str]) -> str:
        """What a crash left half done in Redis: unpublished outboxes, and customers whose own
        segment set disagrees with the segments' member sets."""
        ns = f"sw:{self.prefix}"
        with self.redis.client() as client:
            outboxes = sum(client.llen(f"{ns}{{c:{c}}}:outbox") > 0 for c in customers)
            members = {s: segment_members(client, ns, s) for s in SEGMENT_IDS}
            unsynced = 0
            for customer in customers:
                segs = stored_customer(client, ns, customer).segments
                unsynced += any((s in segs) != (customer in m) for s, m in members.items())
        parts = [f"{outboxes} outboxes"] * bool(outboxes) + [f"{unsynced} unsynced member sets"] * bool(
            unsynced
        )
        return ", ".join(parts)

    def flush_redis(self) -> None:
        self.redis.flushdb()
        self.faults.add("Redis FLUSHDB")

    def restart_redis(self) -> None:
        self.redis.restart()
        self.faults.add("Redis restarted (empty)")

    def restart_broker(self) -> None:
        self.broker.restart()
        self.faults.add("broker restarted (every topic forgotten)")

    def wait_topics(self, timeout: float = 60.0) -> None:
        """The services created their topics again (the consent relay does after a broker restart)."""
        bases = ("customer.events", "consent.changes", "segment.membership")
        wanted = {f"{self.prefix}{base}" for base in bases}

        def present() -> bool:
            try:
                admin = KafkaAdminClient(bootstrap_servers=self.broker.bootstrap, request_timeout_ms=3000)
            except KafkaError:
                return False
            try:
                return wanted <= set(admin.list_topics())
            finally:
                admin.close()

        wait_for(present, timeout, "the topics to be created again", every=0.5)
        self.faults.add("topics present again", fault=False)

    def close(self) -> None:
        self._stopping.set()
        self._watcher.join(2)
        for worker in self.workers():
            worker.managed = False
            worker.service.kill()
        self.redis.stop()
        self.broker.stop()

    def logs(self, tail: int = 30) -> str:
        return "\n".join(f"--- {w.service.log_path.name}\n{w.service.log(tail)}" for w in self.workers())


def _ready(worker: Worker) -> bool:
    if not worker.alive():
        return False
    try:
        return http_client.get(f"{worker.url}/readyz", timeout=3).status_code == 200
    except httpx.HTTPError:
        return False
