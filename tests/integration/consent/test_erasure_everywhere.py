"""Erasure against the real consent, segmenter and audit processes, under an event backlog and
with consent SIGKILLed between the erasure's commit and its publish: afterwards no Redis key,
member, database row, log line or file under DATA_DIR holds the raw id, the ledger records the
erasure once, and every segment the customer was in announced `left`/`erased` once."""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from kafka import KafkaProducer

from shared.events import CustomerEvent, new_event_id, utcnow
from tests.conftest import bearer, service_environment
from tests.faults.collector import MembershipCollector
from tests.integration.consent.conftest import choice, produce, put, read_topic
from tests.integration.consent.test_durability import _killed
from tests.integration.segmenter.conftest import naming, put_segment
from tests.integration.segmenter.test_erasure_final import refused, snapshot_of
from tests.support import ServiceProcess, forget_redis_keys, http_client, wait_for

pytestmark = [pytest.mark.timeout(300), pytest.mark.slow]
DSR = bearer("dsr-officer-0001")
PURPOSES = ("marketing_email", "personalization")
# Each segment the customer joins: one per purpose and one requiring none (an erasure takes the
# customer out of it too).
RULES = {"mail": ("event_count >= 1", ["marketing_email"]), "web": ("event_count >= 1", ["personalization"])}
RULES["all"] = ("event_count >= 1", [])


@pytest.fixture
def raw_id() -> str:
    """An id as production ids often are (an e-mail address), unique to the test so a grep finds only it."""
    return f"jane.{uuid.uuid4().hex[:12]}@erasure.example"


@dataclass
class Stack:
    """Segmenter and audit processes, the segments the customer joins, and a collector reading
    segment.membership from offset 0 as a campaign tool would; each test starts consent itself
    (with the test's `start_service`, on the stack's prefix, in the test's own DATA_DIR)."""

    segmenter: ServiceProcess
    audit: ServiceProcess
    segments: list[str]
    collector: MembershipCollector
    bootstrap: str
    prefix: str
    redis_url: str
    data_dir: Path  # the segmenter's and the ledger's
    start_service: Any = None
    sent: int = 0  # events sent to customer.events, by every test on the stack

    def start_consent(self, **env: str) -> ServiceProcess:
        peers = {"SEGMENTER_URL": self.segmenter.url, "AUDIT_URL": self.audit.url}
        consent: ServiceProcess = self.start_service("consent", TOPIC_PREFIX=self.prefix, **peers, **env)
        return consent.wait_ready(90)

    def send_events(self, customer: str, count: int, occurred_at: datetime, spend: float = 0) -> None:
        """`count` events of the customer on customer.events, as fast as the producer batches them:
        page views, or purchases of `spend` each."""
        producer = KafkaProducer(bootstrap_servers=self.bootstrap, linger_ms=20)
        try:
            for n in range(count):
                event = CustomerEvent(
                    event_id=new_event_id(),
                    customer_id=customer,
                    type="purchase" if spend else "page_view",
                    occurred_at=occurred_at - timedelta(microseconds=n),
                    source="backlog",
                    attributes={"amount": spend, "currency": "EUR"} if spend else {},
                )
                producer.send(f"{self.prefix}customer.events", event.to_bytes(), key=customer.encode())
            producer.flush(60)
            self.sent += count
        finally:
            producer.close()

    def all_events_processed(self) -> bool:
        """The segmenter is done with every event sent to the stack (this test's and earlier ones')."""
        return self.events_processed() >= self.sent

    def events_processed(self) -> float:
        """Events the segmenter is done with, whatever the outcome (applied, erased, duplicate)."""
        text = http_client.get(f"{self.segmenter.url}/metrics", timeout=10).text
        pattern = r"^segwarden_segmenter_events_processed_total\{[^}]*\} ([0-9.e+]+)$"
        return sum(float(value) for value in re.findall(pattern, text, re.M))

    def announced(self, customer: str, segment: str) -> list[tuple[str, str]]:
        """(action, reason) of each change of the customer in the segment, de-duplicated by event id."""
        return [
            (m.action, m.reason)
            for m in self.collector.messages()
            if m.customer_id == customer and m.segment_id == segment
        ]

    def join_everywhere(self, consent: ServiceProcess, customer: str, *also: str) -> None:
        for purpose in (*PURPOSES, *also):
            assert put(consent, customer, purpose, choice()).status_code == 200
        self.send_events(customer, 3, utcnow())

        def joined() -> bool:
            return all([a for a, _ in self.announced(customer, s)][:1] == ["joined"] for s in self.segments)

        wait_for(joined, timeout=90, what="the customer joined every segment")


@contextmanager
def running_stack(kafka_bootstrap: str, redis_url: str, tmp: Path) -> Iterator[Stack]:
    """A segmenter and an audit service on a prefix of their own, with the segments put; their
    Redis keys removed after."""
    prefix = f"t{uuid.uuid4().hex[:10]}."
    tmp.mkdir(parents=True, exist_ok=True)
    env = service_environment(kafka_bootstrap, redis_url, prefix, tmp / "data")
    segmenter = ServiceProcess("segmenter", env, tmp / "segmenter.log")
    audit = ServiceProcess("audit", env, tmp / "audit.log")
    collector = None
    try:
        for service in (segmenter, audit):
            service.wait_ready(90)
        segments = [f"{name}-{uuid.uuid4().hex[:6]}" for name in RULES]
        with httpx.Client(base_url=segmenter.url, headers=bearer(), timeout=10) as api:
            for segment, (rule, purposes) in zip(segments, RULES.values(), strict=True):
                put_segment(api, segment, rule, *purposes)
        collector = MembershipCollector(kafka_bootstrap, f"{prefix}segment.membership").start()
        yield Stack(segmenter, audit, segments, collector, kafka_bootstrap, prefix, redis_url, tmp / "data")
    finally:
        if collector is not None:
            collector.stop()
        for service in (segmenter, audit):
            service.kill()
        forget_redis_keys(redis_url, prefix)


@pytest.fixture(scope="module")
def shared_stack(
    kafka_bootstrap: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    """One stack for the module's tests that freeze or kill nothing of it but consent (each test
    its own raw id, so the greps below find only its own)."""
    with running_stack(kafka_bootstrap, redis_url, tmp_path_factory.mktemp("erasure-stack")) as stack:
        yield stack


@pytest.fixture
def stack(shared_stack: Stack, start_service: Any) -> Stack:
    shared_stack.start_service = start_service
    return shared_stack


@pytest.fixture
def own_stack(kafka_bootstrap: str, redis_url: str, start_service: Any, tmp_path: Path) -> Iterator[Stack]:
    """A stack of the test's own, for a test that SIGSTOPs its segmenter."""
    with running_stack(kafka_bootstrap, redis_url, tmp_path / "stack") as stack:
        stack.start_service = start_service
        yield stack


def settled_receipt(consent: ServiceProcess, raw_id: str) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        response = http_client.get(f"{consent.url}/v1/customers/{raw_id}/erasure", headers=DSR, timeout=30)
        body: dict[str, Any] = response.json()
        return body if response.status_code == 200 and body["status"] == "done" else None

    found: dict[str, Any] = wait_for(done, timeout=120, what="the erasure done in every service", every=0.5)
    return found


def files_naming(root: Path, needle: str) -> list[str]:
    """Every file under `root` (databases, their WAL and journals, models, reports, logs) whose bytes
    contain `needle`."""
    raw = needle.encode()
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and raw in p.read_bytes())


def redis_naming(stack: Stack, customer: str) -> list[str]:
    """Every key of the test's Redis namespace whose name or value holds the id."""

    async def scan() -> list[str]:
        client = aioredis.Redis.from_url(stack.redis_url, decode_responses=True)
        try:
            return await naming(client, f"sw:{stack.prefix}", customer)
        finally:
            await client.aclose()  # type: ignore[attr-defined]

    return asyncio.run(scan())


def assert_erased_everywhere(
    stack: Stack, consent: ServiceProcess, customer: str, erasure_id: str, joined: bool = True
) -> None:
    """Nothing holds the raw id; the ledger has the erasure once; each segment the customer joined
    (every one, unless `joined` is False: an erasure right after signup may come first) announced
    one leave, `erased`."""
    assert redis_naming(stack, customer) == []
    for segment in stack.segments:
        members = http_client.get(
            f"{stack.segmenter.url}/v1/segments/{segment}/members", headers=bearer(), timeout=10
        )
        assert customer not in members.text
        announced = stack.announced(customer, segment)
        if joined or announced:
            assert [action for action, _ in announced[:1]] == ["joined"], (segment, announced)
            assert announced[1:] == [("left", "erased")], (segment, announced)
    records = http_client.get(
        f"{stack.audit.url}/v1/audit",
        params={"customer_id": customer, "kind": "erasure_request"},
        headers=bearer(),
        timeout=10,
    ).json()["records"]
    assert [r["event_id"] for r in records] == [erasure_id], "the ledger records the erasure once"
    # Consent's DATA_DIR (its SQLite database and its log), the segmenter's and the ledger's.
    assert files_naming(Path(consent.env["DATA_DIR"]), customer) == []
    assert files_naming(stack.data_dir, customer) == []
    logs = [s.log_path for s in (consent, stack.segmenter, stack.audit)]
    logged = [
        f"{p.name}: {line[:200]}" for p in logs for line in p.read_text().splitlines() if customer in line
    ]
    assert logged == []


def test_an_erasure_under_an_event_backlog_leaves_nothing_and_is_announced_once(
    own_stack: Stack, raw_id: str
) -> None:
    stack = own_stack
    consent = stack.start_consent()
    stack.join_everywhere(consent, raw_id)
    # The backlog: events queued on customer.events just before the erasure, not yet applied when it
    # comes, and more of them, from before the erasure, delivered after it (a producer catching up).
    # The segmenter is frozen (SIGSTOP) while the backlog and the erasure are queued: it drains 1,500
    # events faster than an erasure travels, so without the freeze the backlog would be a race.
    before_erasure, backlog, late = utcnow(), 1500, 500
    segmenter = stack.segmenter.process
    assert segmenter is not None
    segmenter.send_signal(signal.SIGSTOP)
    try:
        stack.send_events(raw_id, backlog, before_erasure)
        response = http_client.post(f"{consent.url}/v1/customers/{raw_id}/erasure", headers=DSR, timeout=30)
        assert response.status_code == 202
        event_id = response.json()["event_id"].encode()
        erasures = f"{stack.prefix}erasure.requests"
        records = read_topic(stack.bootstrap, erasures, lambda rs: any(event_id in (v or b"") for _, v in rs))
        assert any(event_id in (v or b"") for _, v in records), "the erasure never reached its topic"
    finally:
        segmenter.send_signal(signal.SIGCONT)
    stack.send_events(raw_id, late, before_erasure)
    wait_for(
        stack.all_events_processed,  # its 3 + backlog + late
        timeout=180,
        what="the segmenter through the whole backlog",
        every=0.5,
    )
    receipt = settled_receipt(consent, raw_id)
    assert receipt["event_id"] == response.json()["event_id"]
    assert_erased_everywhere(stack, consent, raw_id, receipt["event_id"])


def postgres_rows_naming(url: str, needle: str) -> list[str]:
    """Tables of the database with a row whose text, or bytes (bytea shows as hex), hold `needle`."""
    import psycopg

    patterns = (f"%{needle}%", f"%{needle.encode().hex()}%")
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as connection:
        tables = [
            t for (t,) in connection.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        ]
        query = 'SELECT count(*) FROM "{}" AS r WHERE r::text LIKE %s OR r::text LIKE %s'
        return [t for t in tables if connection.execute(query.format(t), patterns).fetchone()[0]]  # type: ignore[index]


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_a_sigkill_between_the_erasures_commit_and_its_publish_still_erases_everywhere_once(
    stack: Stack, raw_id: str, request: pytest.FixtureRequest, database: str
) -> None:
    env = {}
    if database == "postgresql":
        env["CONSENT_DB_URL"] = request.getfixturevalue("postgres_url")
    # The grants are commits 1 and 2, the erasure commit 3: killed once it is committed, before
    # the relay is handed it (its fallback poll is too slow to publish it first) and before the 202.
    consent = stack.start_consent(
        FAILPOINTS="consent.after_commit=kill@3", CONSENT_OUTBOX_POLL_INTERVAL_S="30", **env
    )
    stack.join_everywhere(consent, raw_id)
    if database == "postgresql":  # the check below finds the customer's rows while they exist
        assert {"consent_records", "consent_current"} <= set(
            postgres_rows_naming(env["CONSENT_DB_URL"], raw_id)
        )
    with pytest.raises(httpx.HTTPError):
        http_client.post(f"{consent.url}/v1/customers/{raw_id}/erasure", headers=DSR, timeout=30)
    _killed(consent)
    del consent.env["FAILPOINTS"]
    consent.start().wait_ready(90)
    receipt = settled_receipt(consent, raw_id)
    assert_erased_everywhere(stack, consent, raw_id, receipt["event_id"])
    if database == "postgresql":  # its rows are not under DATA_DIR: every table, every column
        assert postgres_rows_naming(env["CONSENT_DB_URL"], raw_id) == []


def held(stack: Stack, customer: str) -> set[str]:
    url = f"{stack.segmenter.url}/v1/customers/{customer}/erasure"
    return set(http_client.get(url, headers=bearer(), timeout=10).json()["held"])


def test_a_model_trained_before_an_erasure_leaves_no_trace_of_the_customer_under_data_dir(
    stack: Stack, raw_id: str
) -> None:
    """The trainer's files (pickled pipeline, signed metadata, PNG report) sit in the same DATA_DIR
    the grep covers; what makes them safe is that they keep aggregates only (no per-row array, no
    report cell under the minimum cluster size: tests/unit/modeling)."""
    consent = stack.start_consent()
    stack.join_everywhere(consent, raw_id, "profiling")
    others = [f"c-model-{n}-{uuid.uuid4().hex[:6]}" for n in range(12)]
    for n, customer in enumerate(others):
        assert put(consent, customer, "profiling", choice()).status_code == 200
        stack.send_events(customer, 2, utcnow(), spend=80.0 * (n % 2))  # buyers and browsers: two clusters
    for customer in [raw_id, *others]:
        wait_for(
            lambda: {"customer:f", "customer:consent"} <= held(stack, customer),  # noqa: B023  # called at once
            timeout=60,
            what="the segmenter's features and consent of every trainee",
        )
    trained = subprocess.run(
        [sys.executable, "-m", "segwarden", "model", "train", "--name", "before-erasure"]
        + ["--clusters", "2", "--min-cluster-size", "3"],
        env=stack.segmenter.env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert trained.returncode == 0, trained.stderr
    assert "trained on 13 customers" in trained.stdout
    models = stack.data_dir / "models"
    assert {p.suffix for p in models.iterdir()} == {".json", ".pkl", ".png"}

    response = http_client.post(f"{consent.url}/v1/customers/{raw_id}/erasure", headers=DSR, timeout=30)
    assert response.status_code == 202
    receipt = settled_receipt(consent, raw_id)
    assert_erased_everywhere(stack, consent, raw_id, receipt["event_id"])


def test_erasures_right_after_signup_then_late_events_and_old_consent_leave_nothing(
    stack: Stack, raw_id: str
) -> None:
    """Issue 12's signup workload through the three services: each customer grants, sends events
    and is erased at once (the grants may still be in the outbox, the events unapplied); once
    every erasure is done, events dated before it and an old consent state come late."""
    consent = stack.start_consent()
    customers = [f"{n}.{raw_id}" for n in range(8)]
    before_erasure = {}

    def signup_then_erase(customer: str) -> str:
        for purpose in PURPOSES:
            assert put(consent, customer, purpose, choice()).status_code == 200
        stack.send_events(customer, 3, utcnow())
        before_erasure[customer] = utcnow()
        response = http_client.post(f"{consent.url}/v1/customers/{customer}/erasure", headers=DSR, timeout=30)
        assert response.status_code == 202
        return str(response.json()["event_id"])

    with ThreadPoolExecutor(len(customers)) as pool:
        erasures = dict(zip(customers, pool.map(signup_then_erase, customers), strict=True))
    for customer in customers:
        assert settled_receipt(consent, customer)["event_id"] == erasures[customer]

    baseline, late = refused(stack.segmenter.url), 5
    for customer in customers:
        stack.send_events(customer, late, before_erasure[customer])
        old = snapshot_of(customer, 1, before_erasure[customer])  # sequence 1: before the erasure's
        produce(stack.bootstrap, f"{stack.prefix}consent.state", customer, [old])
    wait_for(
        lambda: (
            stack.all_events_processed()  # this test's len(customers) * (3 + late), and earlier ones'
            and refused(stack.segmenter.url) >= baseline + len(customers) * (late + 1)
        ),
        timeout=90,
        what="every late event and old consent state refused",
        every=0.5,
    )
    for customer in customers:
        assert_erased_everywhere(stack, consent, customer, erasures[customer], joined=False)
