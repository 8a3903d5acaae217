"""Admission waits, eviction never does: MembershipService with an in-memory barrier, on Redis.

A join that needs consent stays in the outbox until the barrier passes, then consent is checked
again at the door; a `left` is published while the barrier is still closed."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Collection, Sequence
from datetime import UTC, datetime

import pytest
import redis.asyncio as aioredis

from services.segmenter.adapters.redis_keys import KeyLayout
from services.segmenter.adapters.redis_store import EventWrite, RedisCustomerStore
from services.segmenter.barrier import ConsentBarrier
from services.segmenter.domain.consent import PurposeConsent
from services.segmenter.domain.membership import ON_CONSENT
from services.segmenter.membership_service import Cause, MembershipService
from shared.events import MembershipChanged
from tests.unit.segmenter.test_membership import segment

MAIL = segment("mail", "event_count >= 1", "marketing_email")
OPEN = segment("open", "event_count >= 1")
SEGMENTS = {s.id: s for s in (MAIL, OPEN)}


class GateBarrier(ConsentBarrier):
    """Closed until the test opens it."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.asked: list[list[str]] = []

    async def settled(self, customer_ids: Collection[str]) -> None:
        self.asked.append(sorted(customer_ids))
        await self.gate.wait()


class RecordingPublisher:
    def __init__(self) -> None:
        self.sent: list[MembershipChanged] = []

    async def publish(self, changes: Sequence[MembershipChanged]) -> None:
        self.sent.extend(changes)


@pytest.fixture
async def parts(redis_url: str) -> AsyncIterator[tuple[RedisCustomerStore, MembershipService, GateBarrier]]:
    namespace = f"sw:t{uuid.uuid4().hex[:10]}."
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    store = RedisCustomerStore(client, KeyLayout(namespace), 60)
    barrier = GateBarrier()

    def purposes(segment_id: str) -> tuple[str, ...] | None:
        found = SEGMENTS.get(segment_id)
        return None if found is None else found.required_purposes

    membership = MembershipService(
        store,
        RecordingPublisher(),
        purposes,
        lambda *_: None,
        barrier=barrier,  # type: ignore[arg-type]
    )
    yield store, membership, barrier
    await membership.close()
    async for key in client.scan_iter(f"{namespace}*"):
        await client.delete(key)
    await client.aclose()


async def _consent(store: RedisCustomerStore, membership: MembershipService, status: str, seq: int) -> list:
    state = PurposeConsent(status, None, datetime.now(UTC).timestamp(), seq)
    _, snapshot = await store.apply_consent("c-1", {"marketing_email": state})
    return await membership.reconcile(snapshot, [MAIL, OPEN], ON_CONSENT, Cause(f"e{seq}", None))


async def _quiet(membership: MembershipService) -> None:
    await asyncio.gather(*membership._releases)


async def test_a_join_waits_for_the_barrier_and_a_withdrawal_does_not(parts: tuple) -> None:
    store, membership, barrier = parts
    sent = membership.publisher.sent
    write = EventWrite("c-1", "ev-1", "click", datetime.now(UTC).timestamp(), None, {})
    (snapshot,) = await store.apply_events([write], [])
    assert snapshot is not None
    await membership.reconcile(snapshot, [MAIL, OPEN], ON_CONSENT, Cause("ev-1", None))
    assert [(m.segment_id, m.action) for m in sent] == [("open", "joined")]  # needs no consent: at once

    assert await _consent(store, membership, "granted", 1) == []
    assert (await store.read("c-1")).segments == {"mail", "open"} and barrier.asked == [["c-1"]]
    assert len(sent) == 1, "a join went out before the barrier passed"

    published = await _consent(store, membership, "denied", 2)  # the barrier is still closed
    assert [(m.segment_id, m.action, m.reason) for m in published] == [("mail", "left", "consent_withdrawn")]
    assert sent[-1] == published[0]

    barrier.gate.set()
    await _quiet(membership)
    assert not any(m.segment_id == "mail" and m.action == "joined" for m in sent)  # withheld at the door
    assert await store.outbox("c-1") == []


async def test_an_admitted_join_goes_out_once_the_barrier_passes(parts: tuple) -> None:
    store, membership, barrier = parts
    write = EventWrite("c-1", "ev-1", "click", datetime.now(UTC).timestamp(), None, {})
    await store.apply_events([write], [])
    await _consent(store, membership, "granted", 1)
    await membership.flush_outbox("c-1")  # a relay meanwhile neither publishes nor waits twice
    mail = [m for m in membership.publisher.sent if m.segment_id == "mail"]
    assert mail == [] and len(barrier.asked) == 1
    barrier.gate.set()
    await _quiet(membership)
    mail = [m for m in membership.publisher.sent if m.segment_id == "mail"]
    assert [(m.action, m.reason) for m in mail] == [("joined", "consent_granted")]
    assert await store.outbox("c-1") == []
