"""Erasure is complete and final, against the real broker, Redis and Lua: after it no key or value
in Redis names the customer, every segment they were in announced `left`/`erased` once whichever
input of the erasure came first, and no late, redelivered or replayed input (nor a rebuild after
Redis loss) brings them back."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from services.segmenter.adapters.redis_buckets import BucketedIndex
from services.segmenter.adapters.redis_keys import KeyLayout
from shared.events import ConsentStateSnapshot, ErasureRequested, PurposeState, new_event_id
from tests.integration.segmenter.conftest import (
    ADMIN,
    FAST,
    Inputs,
    Outputs,
    membership_io,
    naming,
    put_segment,
    wait_until,
    wait_until_async,
)
from tests.support import OwnRedis, http_client

PURPOSE = "marketing_email"


@pytest.fixture
def io_prefix(shared_prefix: str) -> str:
    """The tests on the shared segmenter use its topics (the rebuild test starts its own)."""
    return shared_prefix


@pytest.fixture
async def aredis(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    await client.aclose()  # type: ignore[attr-defined]


def unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


def refused(url: str) -> float:
    """Inputs the segmenter refused as older than their customer's erasure, all kinds together."""
    text = http_client.get(f"{url}/metrics", timeout=10).text
    found = re.findall(r"^segwarden_segmenter_erased_input_refused_total\{[^}]*\} ([0-9.e+]+)$", text, re.M)
    return sum(float(value) for value in found)


async def markers(client: aioredis.Redis, namespace: str) -> int:
    return len([key async for key in client.scan_iter(f"{namespace}*:erased:*", count=1000)])


def snapshot_of(customer: str, sequence: int, at: datetime) -> bytes:
    """A consent.state value granting PURPOSE."""
    state = PurposeState(status="granted", effective=True, recorded_at=at, sequence=sequence)
    return ConsentStateSnapshot(
        event_id=new_event_id(), customer_id=customer, purposes={PURPOSE: state}, updated_at=at
    ).to_bytes()


async def erasure_denial(inputs: Inputs, customer: str, sequence: int) -> None:
    await inputs.consent(
        customer, PURPOSE, "denied", previous_status="granted", reason="erasure", sequence=sequence
    )


async def erasure_request(inputs: Inputs, customer: str, sequence: int) -> ErasureRequested:
    request = ErasureRequested(
        event_id=new_event_id(), customer_id=customer, requested_at=datetime.now(UTC), sequence=sequence
    )
    await inputs.send("erasure.requests", customer, request.to_bytes())
    return request


async def erase(inputs: Inputs, customer: str, sequence: int) -> ErasureRequested:
    """What the consent service publishes for an erasure: the denials numbered before the request,
    the consent.state tombstone, the request."""
    await erasure_denial(inputs, customer, sequence)
    await inputs.send("consent.state", customer, None)
    return await erasure_request(inputs, customer, sequence + 1)


async def joined(inputs: Inputs, outputs: Outputs, customer: str, segment: str) -> None:
    await inputs.consent(customer, PURPOSE, "granted", sequence=1)
    await inputs.event(customer, "click")
    await wait_until(lambda: outputs.find(customer, segment, "joined"), what=f"{customer} joined")


async def gone(client: aioredis.Redis, namespace: str, customer: str) -> None:
    async def nothing_names_them() -> bool:
        return await naming(client, namespace, customer) == []

    await wait_until_async(nothing_names_them, 30, "no Redis key or value naming the erased customer")


async def test_an_erased_customer_stays_gone_through_redelivered_events_and_replayed_consent(
    api: httpx.Client, segmenter: Any, kafka_io: Any, aredis: aioredis.Redis, shared_prefix: str
) -> None:
    inputs, outputs = kafka_io
    namespace, customer, segment = f"sw:{shared_prefix}", unique("c-gone"), unique("mail")
    put_segment(api, segment, "event_count >= 1", PURPOSE)
    grant = await inputs.consent(customer, PURPOSE, "granted", sequence=1)
    event = await inputs.event(customer, "click")
    await wait_until(lambda: outputs.find(customer, segment, "joined"), what="the join")
    before_erasure = datetime.now(UTC) - timedelta(milliseconds=1)
    await erase(inputs, customer, 2)
    await gone(aredis, namespace, customer)
    # The slot is gone once the left is on the broker; the collector reads it a moment later.
    await wait_until(lambda: len(outputs.of(customer, segment)) >= 2, what="the erasure's left")
    announced = outputs.of(customer, segment)
    assert [m.action for m in announced] == ["joined", "left"] and announced[-1].reason == "erased"

    baseline = refused(segmenter.url)
    await inputs.send("customer.events", customer, event.to_bytes())  # a redelivery
    await inputs.event(
        customer, "purchase", amount=500, currency="EUR", occurred_at=before_erasure
    )  # a late one
    await inputs.send("consent.changes", customer, grant.to_bytes())  # a redelivered grant
    await inputs.send("consent.state", customer, snapshot_of(customer, 1, grant.recorded_at))
    await wait_until(lambda: refused(segmenter.url) >= baseline + 4, what="the four old inputs refused")
    assert await naming(aredis, namespace, customer) == []
    assert [m.action for m in outputs.of(customer, segment)] == ["joined", "left"]
    holdings = api.get(f"/v1/customers/{customer}/erasure").json()
    assert holdings == {"customer_id": customer, "held": []}


async def test_whichever_input_of_the_erasure_comes_first_the_leave_says_erased_and_no_grant_returns(
    api: httpx.Client, segmenter: Any, kafka_io: Any, aredis: aioredis.Redis, shared_prefix: str
) -> None:
    inputs, outputs = kafka_io
    namespace, segment = f"sw:{shared_prefix}", unique("mail")
    put_segment(api, segment, "event_count >= 1", PURPOSE)

    # The request first: the grant and the denial numbered before it are refused when they come.
    first = unique("c-request-first")
    await inputs.event(first, "click")

    async def known() -> bool:
        return bool(await naming(aredis, namespace, first))

    await wait_until_async(known, 30, "the first event applied")
    marked = await markers(aredis, namespace)
    await erasure_request(inputs, first, 3)

    async def marker_written() -> bool:
        return await markers(aredis, namespace) > marked

    await wait_until_async(marker_written, 30, "the erasure marked")
    baseline = refused(segmenter.url)
    await inputs.consent(first, PURPOSE, "granted", sequence=1)
    await erasure_denial(inputs, first, 2)
    await inputs.event(first, "click", occurred_at=datetime.now(UTC) - timedelta(seconds=5))
    await wait_until(
        lambda: refused(segmenter.url) >= baseline + 3, what="the grant, denial and event refused"
    )
    await gone(aredis, namespace, first)
    assert outputs.of(first) == []

    # The erasure's denial first, then the tombstone first: each member leaves as `erased`.
    for name, leading in (("c-denial-first", "denial"), ("c-tombstone-first", "tombstone")):
        customer = unique(name)
        await joined(inputs, outputs, customer, segment)
        if leading == "denial":
            await erasure_denial(inputs, customer, 2)
        else:
            await inputs.send("consent.state", customer, None)
        left = await wait_until(partial(outputs.find, customer, segment, "left"), what=f"{name}: left")
        assert left.reason == "erased", name
        await erasure_request(inputs, customer, 3)
        await gone(aredis, namespace, customer)
        assert [m.action for m in outputs.of(customer, segment)] == ["joined", "left"], name


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    server = OwnRedis(tmp_path / "redis").start()
    yield server
    server.stop()


async def test_a_rebuild_after_redis_loss_does_not_bring_an_erased_customer_back(
    start_service: Any, own_redis: OwnRedis, kafka_bootstrap: str, topic_prefix: str
) -> None:
    service = start_service("segmenter", REDIS_URL=own_redis.url, **FAST).wait_ready()
    client = aioredis.Redis.from_url(own_redis.url, decode_responses=True)
    outputs = Outputs()
    namespace, erased, kept = f"sw:{topic_prefix}", "c-erased-before-loss", "c-kept-through-loss"
    try:
        async with membership_io(kafka_bootstrap, topic_prefix, outputs.messages.append) as inputs:
            with httpx.Client(base_url=service.url, headers=ADMIN) as api:
                put_segment(api, "mail", "event_count >= 1", PURPOSE)
            for customer in (erased, kept):
                await joined(inputs, outputs, customer, "mail")
                await inputs.send("consent.state", customer, snapshot_of(customer, 1, datetime.now(UTC)))
            await erase(inputs, erased, 2)
            await gone(client, namespace, erased)

            await client.flushdb()
            await inputs.event(kept, "click")  # the loss is noticed, the partitions rebuilt

            async def kept_rebuilt() -> bool:
                head = KeyLayout(namespace).members("mail")
                return await BucketedIndex(client).scores(head, [kept]) != [None]

            await wait_until_async(kept_rebuilt, 90, "the kept member rebuilt")
            await wait_until(
                lambda: "lost" in http_client.get(f"{service.url}/metrics").text, what="the rebuild"
            )
            baseline = refused(service.url)
            await inputs.event(erased, "click", occurred_at=datetime.now(UTC) - timedelta(hours=1))
            await wait_until(lambda: refused(service.url) > baseline, what="the late event refused")
            assert await naming(client, namespace, erased) == []
            assert await markers(client, namespace) == 1  # rebuilt from erasure.requests
            assert [m.action for m in outputs.of(erased)] == ["joined", "left"]
    finally:
        await client.aclose()  # type: ignore[attr-defined]
