"""Fixtures for segmenter tests: a running segmenter, a producer of its inputs, a reader of its outputs."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from services.segmenter.adapters.kafka_publisher import customer_partition
from services.segmenter.adapters.redis_keys import CONSENT, KeyLayout
from services.segmenter.adapters.redis_store import RedisCustomerStore
from shared.events import ConsentChanged, CustomerEvent, MembershipChanged, new_event_id
from tests.conftest import TEST_TOKENS
from tests.support import (
    TEST_PSEUDONYM_KEY,
    ServiceProcess,
    forget_redis_keys,
    index_members,
    segment_members,
    stored_customer,
)

ADMIN = {"Authorization": "Bearer admin-token-0001"}
FAST = {"SEGMENTER_SWEEP_INTERVAL_S": "0.5", "SEGMENTER_COMPLIANCE_INTERVAL_S": "1"}


async def outbox_of(store: RedisCustomerStore, customer_id: str) -> list[str]:
    """A customer's outbox, oldest message first."""
    return (await store.read_outboxes([customer_id]))[0]


async def wait_until(check: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


async def wait_until_async(check: Callable[[], Awaitable[Any]], timeout: float, what: str) -> None:
    """wait_until for a check that must await (a Redis scan, an HTTP call in a thread)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class Inputs:
    """Produces the segmenter's inputs with the shared topic models."""

    def __init__(self, producer: AIOKafkaProducer, prefix: str) -> None:
        self.producer = producer
        self.prefix = prefix
        self.acked: dict[str, datetime] = {}  # consent changes by event id: when the broker had it

    async def send(self, base: str, key: str, value: bytes | None, wait: bool = True) -> asyncio.Future[Any]:
        topic = self.prefix + base
        sent = await self.producer.send(topic, value, key=key.encode())
        if wait:
            await sent
        return sent

    async def event(
        self, customer: str, type_: str = "click", wait: bool = True, **attributes: Any
    ) -> CustomerEvent:
        event = CustomerEvent(
            event_id=attributes.pop("event_id", None) or new_event_id(),
            customer_id=customer,
            type=type_,
            occurred_at=attributes.pop("occurred_at", None) or datetime.now(UTC),
            source="test",
            attributes=attributes,
        )
        await self.send("customer.events", customer, event.to_bytes(), wait)
        return event

    async def consent(
        self,
        customer: str,
        purpose: str,
        status: str,
        wait: bool = True,
        expires_in: float | None = None,
        **fields: Any,
    ) -> ConsentChanged:
        """A consent change; `fields` set others (`sequence`, `reason`, `expires_at`)."""
        now = datetime.now(UTC)
        values: dict[str, Any] = {
            "event_id": new_event_id(),
            "customer_id": customer,
            "purpose": purpose,
            "status": status,
            "previous_status": None,
            "reason": "user",
            "source": "test",
            "jurisdiction": "GDPR",
            "policy_version": "2026-03",
            "recorded_at": now,
            "expires_at": now + timedelta(seconds=expires_in) if expires_in is not None else None,
        }
        change = ConsentChanged(**{**values, **fields})
        sent = await self.send("consent.changes", customer, change.to_bytes(), wait=False)
        sent.add_done_callback(lambda _: self.acked.setdefault(change.event_id, datetime.now(UTC)))
        if wait:
            await sent
        return change


class Outputs:
    """Collects everything the segmenter publishes on segment.membership, in partition order."""

    def __init__(self) -> None:
        self.messages: list[MembershipChanged] = []
        self.published: dict[str, datetime] = {}  # event id -> its record's timestamp (when sent)

    def of(self, customer: str, segment: str | None = None) -> list[MembershipChanged]:
        return [m for m in self.messages if m.customer_id == customer and segment in (None, m.segment_id)]

    def find(
        self, customer: str, segment: str, action: str, reason: str | None = None
    ) -> MembershipChanged | None:
        for m in self.of(customer, segment):
            if m.action == action and reason in (None, m.reason):
                return m
        return None


@pytest.fixture
def io_prefix(topic_prefix: str) -> str:
    """The topic prefix the test's inputs and outputs use (a module sharing a service overrides it)."""
    return topic_prefix


@asynccontextmanager
async def membership_io(
    kafka_bootstrap: str,
    topic_prefix: str,
    receive: Callable[[MembershipChanged], object],
    published: dict[str, datetime] | None = None,
) -> AsyncIterator[Inputs]:
    """A producer of the segmenter's inputs, and `receive` called with each segment.membership
    message; `published` gets each one's record timestamp (when the segmenter sent it) by event id."""
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, linger_ms=5)
    await producer.start()
    consumer = AIOKafkaConsumer(
        topic_prefix + "segment.membership",
        bootstrap_servers=kafka_bootstrap,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=50,
        metadata_max_age_ms=1000,
    )
    await consumer.start()

    async def collect() -> None:
        async for record in consumer:
            message = MembershipChanged.model_validate_json(record.value)
            if published is not None:
                published.setdefault(message.event_id, datetime.fromtimestamp(record.timestamp / 1000, UTC))
            receive(message)

    task = asyncio.create_task(collect())
    try:
        yield Inputs(producer, topic_prefix)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await consumer.stop()
        await producer.stop()


@pytest.fixture
async def kafka_io(kafka_bootstrap: str, io_prefix: str) -> AsyncIterator[tuple[Inputs, Outputs]]:
    outputs = Outputs()
    receive = outputs.messages.append
    async with membership_io(kafka_bootstrap, io_prefix, receive, outputs.published) as inputs:
        yield inputs, outputs


async def naming(client: aioredis.Redis, namespace: str, text: str) -> list[str]:
    """Every key under `namespace` whose name or any value (field, member, element) contains `text`."""
    found = []
    async for key in client.scan_iter(f"{namespace}*", count=1000):
        kind = await client.type(key)
        if kind == "string":
            values = [await client.get(key)]
        elif kind == "hash":
            values = [part for pair in (await client.hgetall(key)).items() for part in pair]
        elif kind == "set":
            values = list(await client.smembers(key))
        elif kind == "zset":
            values = list(await client.zrange(key, 0, -1))
        else:
            values = list(await client.lrange(key, 0, -1))
        if text in key or any(text in str(value) for value in values):
            found.append(key)
    return sorted(found)


@pytest.fixture
async def store(redis_url: str, topic_prefix: str) -> AsyncIterator[RedisCustomerStore]:
    """The customer store under the test's own key prefix, its keys removed afterwards."""
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    yield RedisCustomerStore(client, KeyLayout(f"sw:{topic_prefix}"), TEST_PSEUDONYM_KEY)
    keys = [key async for key in client.scan_iter(f"sw:{topic_prefix}*", count=1000)]
    if keys:
        await client.unlink(*keys)
    await client.aclose()  # type: ignore[attr-defined]


@contextmanager
def module_segmenter(
    kafka_bootstrap: str, redis_url: str, tmp: Path, **overrides: str
) -> Iterator[ServiceProcess]:
    """A segmenter on its own prefix, for the tests of one module; its Redis keys removed after."""
    prefix = f"t{uuid.uuid4().hex[:10]}."
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "REDIS_URL": redis_url,
        "TOPIC_PREFIX": prefix,
        "TOPIC_PARTITIONS": "3",
        "DATA_DIR": str(tmp / "data"),
        "AUTH_TOKENS": ",".join(f"{token}={scopes}" for token, scopes in TEST_TOKENS.items()),
        "INTERNAL_TOKEN": "admin-token-0001",
        **overrides,
    }
    service = ServiceProcess("segmenter", env, tmp / "segmenter.log")
    try:
        # 90 s as the erasure stacks': a miss errors every test sharing it (60 s was missed at load 20+).
        yield service.wait_ready(90)
    finally:
        service.kill()
        forget_redis_keys(redis_url, prefix)


@pytest.fixture(scope="module")
def shared_segmenter_env() -> dict[str, str]:
    """The shared segmenter's settings: fast sweeps and compliance scans, unless a module overrides
    this (with `{}` for the defaults, 30 s and 60 s, when they must mask nothing)."""
    return FAST


@pytest.fixture(scope="module")
def shared_segmenter(
    kafka_bootstrap: str,
    redis_url: str,
    tmp_path_factory: pytest.TempPathFactory,
    shared_segmenter_env: dict[str, str],
) -> Iterator[ServiceProcess]:
    """One segmenter for a whole module (its tests use distinct customers and segments): each
    start costs seconds of imports and a group join."""
    tmp = tmp_path_factory.mktemp("segmenter")
    with module_segmenter(kafka_bootstrap, redis_url, tmp, **shared_segmenter_env) as service:
        yield service


@pytest.fixture
def segmenter(shared_segmenter: ServiceProcess) -> ServiceProcess:
    return shared_segmenter


@pytest.fixture
def api(segmenter: Any) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=segmenter.url, headers=ADMIN, timeout=10) as client:
        yield client


class RedisView:
    """Reads the segmenter's live membership straight from Redis (what campaign tools would query)."""

    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self.client = client
        self.ns = f"sw:{prefix}"

    def state(self, customer: str) -> str:
        """The key of the customer's hash (features, consent, segments, version)."""
        return KeyLayout(self.ns).state(customer)

    def consent(self, customer: str, purpose: str) -> str | None:
        """The stored state of one purpose (`status|expires|recorded|seq|lapsed`), None when none."""
        return self.client.hget(self.state(customer), CONSENT + purpose)  # type: ignore[return-value]

    def segments_of(self, customer: str) -> set[str]:
        return stored_customer(self.client, self.ns, customer).segments

    def members(self, segment: str) -> set[str]:
        return segment_members(self.client, self.ns, segment)

    def features(self, customer: str) -> dict[str, str]:
        """The stored features, without the bookkeeping fields (`_o:<partition>`, consent...)."""
        return stored_customer(self.client, self.ns, customer).features

    def outbox(self, customer: str) -> list[str]:
        return list(self.client.lrange(f"{self.ns}{{c:{customer}}}:outbox", 0, -1))

    def known(self, customer: str, partitions: int = 3) -> bool:
        """Whether the customer is in their partition's known index (what sweeps and retention
        walk; TOPIC_PARTITIONS is 3 in the tests' services)."""
        head = KeyLayout(self.ns).known(customer_partition(customer, partitions))
        return customer in index_members(self.client, head)


@pytest.fixture
def redis_view(redis_url: str, io_prefix: str) -> Iterator[RedisView]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    yield RedisView(client, io_prefix)
    client.close()


def put_segment(client: httpx.Client, segment_id: str, rule: str, *purposes: str) -> dict[str, Any]:
    response = client.put(
        f"/v1/segments/{segment_id}",
        json={"name": segment_id, "rule": rule, "required_purposes": list(purposes)},
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


@pytest.fixture
def shared_prefix(shared_segmenter: ServiceProcess) -> str:
    return shared_segmenter.env["TOPIC_PREFIX"]
