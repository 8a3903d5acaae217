"""The compliance monitor decides at commit time, from the state it commits on, not from the
snapshot its scan read earlier: a consent granted since the scan keeps the member, and the
reason and the violation count are those of the state at the commit."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Collection
from datetime import UTC, datetime

import pytest
import redis.asyncio as aioredis

from services.segmenter.adapters.redis_keys import SEGMENT, KeyLayout
from services.segmenter.adapters.redis_store import RedisCustomerStore
from services.segmenter.domain.consent import PurposeConsent
from services.segmenter.domain.ports import BarrierTimeoutError, ConsentBarrier
from services.segmenter.domain.segments import SegmentRegistry
from services.segmenter.membership_service import NO_CAUSE, MembershipService
from services.segmenter.sweeps import Sweeper
from tests.integration.segmenter.test_admission_barrier import MAIL, RecordingPublisher
from tests.support import TEST_PSEUDONYM_KEY

NOW = datetime.now(UTC).timestamp()


@pytest.fixture
async def sweeper(redis_url: str) -> AsyncIterator[tuple[RedisCustomerStore, Sweeper, RecordingPublisher]]:
    namespace = f"sw:t{uuid.uuid4().hex[:10]}."
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    store = RedisCustomerStore(client, KeyLayout(namespace), TEST_PSEUDONYM_KEY)
    registry = SegmentRegistry()
    registry.put(MAIL)
    publisher = RecordingPublisher()
    membership = MembershipService(
        store,
        publisher,
        lambda s: MAIL.required_purposes if s == "mail" else None,
        lambda *_: None,
    )
    yield store, Sweeper(store, registry, membership, lambda: [0], b"k" * 32), publisher
    async for key in client.scan_iter(f"{namespace}*"):
        await client.delete(key)
    await client.aclose()  # type: ignore[attr-defined]  # types-redis predates aclose


async def _member_without_consent(store: RedisCustomerStore, withdrawn_at: float) -> None:
    await store.apply_consent("c-1", {"marketing_email": PurposeConsent("denied", None, withdrawn_at, 1)})
    await store.client.hset(store.keys.state("c-1"), SEGMENT + "mail", "1")
    await store.set_members_many([("c-1", {"mail": True})])


async def test_a_grant_since_the_scan_keeps_the_member(sweeper: tuple) -> None:
    store, monitor, publisher = sweeper
    await _member_without_consent(store, NOW - 60)
    stale = await store.read("c-1")  # what the scan read
    await store.apply_consent("c-1", {"marketing_email": PurposeConsent("granted", None, NOW, 2)})
    assert await monitor._check(stale) == 0
    assert publisher.sent == [] and (await store.read("c-1")).segments == {"mail"}


async def test_the_reason_is_that_of_the_state_at_the_commit(sweeper: tuple) -> None:
    store, monitor, publisher = sweeper
    await store.apply_consent("c-1", {"marketing_email": PurposeConsent("granted", NOW - 1, NOW - 60, 1)})
    await store.client.hset(store.keys.state("c-1"), SEGMENT + "mail", "1")
    stale = await store.read("c-1")  # an expired grant: not a violation, reason consent_expired
    await store.apply_consent("c-1", {"marketing_email": PurposeConsent("denied", None, NOW - 30, 2)})
    assert await monitor._check(stale) == 1  # withdrawn 30 s ago and still a member: a violation
    assert [(m.action, m.reason) for m in publisher.sent] == [("left", "consent_withdrawn")]
    assert (await store.read("c-1")).segments == set()


class _StuckBarrier(ConsentBarrier):
    """The consent follower has not read the customer's partition (a takeover still replaying)."""

    async def settled(self, customer_ids: Collection[str]) -> None:
        raise BarrierTimeoutError("consent partitions not read")


class _HandlingBarrier(ConsentBarrier):
    """The follower handles the redelivered withdrawal (and evicts) before the barrier passes."""

    def __init__(self, membership: MembershipService) -> None:
        self.membership = membership

    async def settled(self, customer_ids: Collection[str]) -> None:
        for customer_id in customer_ids:
            await self.membership.evict(customer_id, {"mail": "consent_withdrawn"}, NO_CAUSE)


async def test_a_lapse_the_follower_has_not_read_yet_is_evicted_but_not_counted(sweeper: tuple) -> None:
    store, monitor, publisher = sweeper
    monitor.membership.barrier = _StuckBarrier()
    await _member_without_consent(store, NOW - 60)  # applied by a worker killed before it evicted
    assert await monitor._check(await store.read("c-1")) == 0
    assert [(m.action, m.reason) for m in publisher.sent] == [("left", "consent_withdrawn")]


async def test_a_lapse_the_hot_path_evicts_once_read_is_no_violation(sweeper: tuple) -> None:
    store, monitor, publisher = sweeper
    monitor.membership.barrier = _HandlingBarrier(monitor.membership)
    await _member_without_consent(store, NOW - 60)
    assert await monitor._check(await store.read("c-1")) == 0
    assert [(m.action, m.reason) for m in publisher.sent] == [("left", "consent_withdrawn")]  # once
    assert (await store.read("c-1")).segments == set()
