"""Consent during a rebuild, in-process against the real Redis: while a partition is closed its
features cannot be trusted (a rebuild deletes them, then replays the topic), so a consent input
decides only what consent alone decides, the leave of a withdrawn purpose; the rule waits for the
rebuild. The fault suite's takeover saw the old behaviour: a redelivered consent state, read while
the survivor rebuilt the dead worker's partitions, announced `left rule_unmatched` for customers
whose rule still held, and the rebuild's reconciler announced them `joined` again."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from aiokafka.structs import ConsumerRecord

from services.segmenter.adapters.redis_generation import RedisGenerationMarker
from services.segmenter.adapters.redis_store import RedisCustomerStore
from services.segmenter.domain.membership import ON_EVENT
from services.segmenter.membership_service import NO_CAUSE
from services.segmenter.recovery import HeldStreamHandlers, RedisRecovery
from shared.events import ConsentChanged, new_event_id
from tests.integration.segmenter.test_idempotence import NoExpiry, World, segment, write
from tests.support import present


def change(purpose: str, status: str, offset: int) -> ConsumerRecord:
    """A consent change of c-1 as the consent follower reads it."""
    message = ConsentChanged(
        event_id=new_event_id(),
        customer_id="c-1",
        purpose=purpose,
        status=status,  # type: ignore[arg-type]  # the test passes only "granted" or "denied"
        previous_status="granted",
        reason="user",
        source="test",
        jurisdiction="GDPR",
        policy_version="2026-03",
        recorded_at=datetime.now(UTC),
        expires_at=None,
    )
    return ConsumerRecord("t", 0, offset, 0, 0, b"c-1", message.to_bytes(), None, 0, 0, ())


def reasons(world: World, segment_id: str) -> list[tuple[str, str]]:
    return [(m.action, m.reason) for m in world.published.messages if m.segment_id == segment_id]


async def test_consent_read_while_a_partition_is_rebuilt_decides_evictions_only(
    store: RedisCustomerStore, tmp_path: Path
) -> None:
    world = World(store)
    world.registry.put(segment("mail", "purchase_count >= 1", "marketing_email"))
    world.registry.put(segment("web", "purchase_count >= 1", "personalization"))
    marker = RedisGenerationMarker(world.store.client, world.store.keys.namespace, tmp_path, 1)
    unused = None  # the rebuild itself is not run here: its first step is done by hand below
    recovery = RedisRecovery(marker, unused, unused, [])  # type: ignore[arg-type]
    handlers = HeldStreamHandlers(world.store, world.registry, world.membership, None, NoExpiry())  # type: ignore[arg-type]
    handlers.recovery = recovery
    await world.grant("c-1", "marketing_email")
    await world.grant("c-1", "personalization")
    snapshot = present(await world.store.apply_events([write(1)], [(0, "c-1")]))[0][1]
    await world.membership.reconcile(snapshot, list(world.registry.all()), ON_EVENT, NO_CAUSE)
    assert await world.members("mail") == await world.members("web") == {"c-1"}

    # A rebuild of partition 0 has begun: the partition is closed and its features are gone.
    recovery.closed = {0}
    await world.store.forget_features(["c-1"])
    await handlers.on_consent_change(change("marketing_email", "granted", 2))  # a redelivered grant
    await handlers.on_consent_change(change("personalization", "denied", 3))  # a withdrawal
    assert reasons(world, "mail") == [("joined", "rule_matched")]  # the rule waits for the rebuild
    assert reasons(world, "web") == [("joined", "rule_matched"), ("left", "consent_withdrawn")]
    assert await world.members("mail") == {"c-1"} and await world.members("web") == set()

    # The gate is what held the rule back: on an open partition the same input decides it.
    recovery.closed = set()
    await handlers.on_consent_change(change("marketing_email", "granted", 4))
    assert reasons(world, "mail") == [("joined", "rule_matched"), ("left", "rule_unmatched")]
