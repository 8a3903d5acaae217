"""Fixtures for the consent service's integration tests: a shared service per module, topic readers."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from playwright.sync_api import Browser, Locator, Page, sync_playwright

from shared.embedded import free_port
from tests.conftest import TEST_TOKENS
from tests.integration.segmenter.conftest import FAST, module_segmenter
from tests.support import ServiceProcess, http_client, present

Record = tuple[str | None, bytes | None]
CHROMIUM = Path("/usr/bin/chromium")  # tests/prepare.py installs Debian's package
WRITER = {"Authorization": "Bearer consent-writer-01"}


def consent_env(kafka_bootstrap: str, redis_url: str, data_dir: Path, **overrides: str) -> dict[str, str]:
    """The env of `service_env`, for fixtures wider than one test (its own prefix and data dir)."""
    return {
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "REDIS_URL": redis_url,
        "TOPIC_PREFIX": f"t{uuid.uuid4().hex[:10]}.",
        "TOPIC_PARTITIONS": "3",
        "DATA_DIR": str(data_dir),
        "AUTH_TOKENS": ",".join(f"{token}={scopes}" for token, scopes in TEST_TOKENS.items()),
        "INTERNAL_TOKEN": "admin-token-0001",
        "CONSENT_EXPIRY_INTERVAL_S": "1",
        "CONSENT_OUTBOX_POLL_INTERVAL_S": "0.5",
        # Closed ports, so the export's "unavailable" path is tested even if a stack runs on 8002/8003.
        "SEGMENTER_URL": f"http://127.0.0.1:{free_port()}",
        "AUDIT_URL": f"http://127.0.0.1:{free_port()}",
        "DELIVERY_URL": f"http://127.0.0.1:{free_port()}",
        **overrides,
    }


@pytest.fixture(scope="module")
def consent(
    kafka_bootstrap: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServiceProcess]:
    """One consent service shared by a module's tests; each test uses its own customer ids."""
    tmp = tmp_path_factory.mktemp("consent")
    service = ServiceProcess(
        "consent", consent_env(kafka_bootstrap, redis_url, tmp / "data"), tmp / "consent.log"
    )
    try:
        yield service.wait_ready()
    finally:
        service.kill()


@pytest.fixture(scope="package")
def preference_stack(
    kafka_bootstrap: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ServiceProcess, ServiceProcess]]:
    """A segmenter and a consent service on one topic prefix, consent reading segments from it:
    one pair for every browser module that needs both (each test its own customer and segment)."""
    tmp = tmp_path_factory.mktemp("stack")
    with module_segmenter(kafka_bootstrap, redis_url, tmp, **FAST) as segmenter:
        env = consent_env(
            kafka_bootstrap,
            redis_url,
            tmp / "consent-data",
            TOPIC_PREFIX=segmenter.env["TOPIC_PREFIX"],
            SEGMENTER_URL=segmenter.url,
            CONSENT_SHOP_CURRENCY="CHF",  # the "why" words amounts in the shop's currency
        )
        consent = ServiceProcess("consent", env, tmp / "consent.log")
        try:
            yield consent.wait_ready(90), segmenter
        finally:
            consent.kill()


@pytest.fixture(scope="package")
def peer_segmenter(
    kafka_bootstrap: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServiceProcess]:
    """One segmenter for the export and erasure-receipt tests, which start their own audit, delivery
    and consent on its prefix (each test its own customer id; neither stops or freezes it)."""
    with module_segmenter(kafka_bootstrap, redis_url, tmp_path_factory.mktemp("peers")) as segmenter:
        yield segmenter


@pytest.fixture(scope="package")
def chromium() -> Iterator[Browser]:
    """Debian's chromium driven by Playwright, launched once for the package's browser tests."""
    assert CHROMIUM.exists(), "no /usr/bin/chromium: run tests/prepare.py (make test does)"
    with sync_playwright() as playwright:
        # --no-sandbox: the suite runs as root, where Chromium's sandbox refuses to start.
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def browser(chromium: Browser) -> Iterator[Browser]:
    """The package's chromium for one test: the pages and contexts the test opens are closed after
    it (a page left open would go on running its script against a stopped service)."""
    before = set(chromium.contexts)
    yield chromium
    for context in chromium.contexts:
        if context not in before:
            context.close()


def link(service: ServiceProcess, customer_id: str) -> str:
    """A preference link for the customer (the URL never shows the customer id)."""
    response = http_client.post(
        f"{service.url}/v1/customers/{customer_id}/preference-link",
        json={"jurisdiction": "GDPR", "policy_version": "2026-03"},
        headers=WRITER,
        timeout=10,
    )
    assert response.status_code == 200, response.text
    url: str = response.json()["url"]
    assert customer_id not in url
    return url


def purpose(page: Page, purpose_id: str) -> Locator:
    return page.locator(f'.purpose[data-purpose="{purpose_id}"]')


@pytest.fixture
def customer() -> str:
    return f"c-{uuid.uuid4().hex[:12]}"


def topic(service: ServiceProcess, base: str) -> str:
    return service.env["TOPIC_PREFIX"] + base


def read_topic(
    bootstrap: str, name: str, until: Callable[[list[Record]], bool], timeout: float = 30.0
) -> list[Record]:
    """Every (key, value) of a topic from the start, polled until `until` holds or the deadline passes."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=100)
    try:
        partitions = _partitions(consumer, name, timeout)
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        records: list[Record] = []
        deadline = time.monotonic() + timeout
        while not until(records) and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=200).values():
                records.extend((r.key.decode() if r.key else None, r.value) for r in batch)
        return records
    finally:
        consumer.close()


def _partitions(consumer: KafkaConsumer, name: str, timeout: float) -> list[TopicPartition]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = consumer.partitions_for_topic(name)
        if found:
            return [TopicPartition(name, p) for p in sorted(found)]
        time.sleep(0.2)
    raise AssertionError(f"topic {name} does not exist")


def for_key(records: list[Record], key: str) -> list[bytes]:
    """The values of `key`, in order; a tombstone among them fails the test (see `tombstoned`)."""
    return present(value for k, value in records if k == key)


def tombstoned(records: list[Record], key: str) -> bool:
    """The last record of `key` is a tombstone (an erased customer's consent.state)."""
    values = [value for k, value in records if k == key]
    return bool(values) and values[-1] is None


def produce(bootstrap: str, name: str, key: str, values: list[bytes]) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap)
    try:
        for value in values:
            producer.send(name, value, key=key.encode())
        producer.flush(30)
    finally:
        producer.close()


def choice(status: str = "granted", **fields: object) -> dict[str, object]:
    return {
        "status": status,
        "source": "preference-center",
        "jurisdiction": "GDPR",
        "policy_version": "2026-03",
    } | fields


def profiling_requests(customer: str, statuses: list[str]) -> list[bytes]:
    """consent.requests records for the customer's `profiling` choices, request ids r0, r1, ..."""
    return [
        json.dumps(
            {"request_id": f"{customer}-r{n}", "customer_id": customer, "purpose": "profiling"}
            | choice(status)
        ).encode()
        for n, status in enumerate(statuses)
    ]


def put(
    service: ServiceProcess, customer_id: str, purpose: str, body: dict[str, object], **headers: str
) -> httpx.Response:
    return http_client.put(
        f"{service.url}/v1/customers/{customer_id}/consents/{purpose}",
        json=body,
        headers={"Authorization": "Bearer consent-writer-01", **headers},
        timeout=10,
    )
