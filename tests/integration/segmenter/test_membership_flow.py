"""Consent-gated membership end to end: join, eviction on withdrawal, no rejoin, expiry, erasure,
dead letters, idempotence and consent state loaded before ready."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer

from shared.events import DeadLetter, ErasureRequested, MembershipChanged, new_event_id
from tests.integration.segmenter.conftest import put_segment, wait_until


@pytest.fixture
def io_prefix(shared_prefix: str) -> str:
    """This module's tests share one segmenter, so its topics."""
    return shared_prefix


async def test_withdrawal_evicts_at_once_and_nothing_brings_the_customer_back(
    api: httpx.Client, kafka_io: Any, redis_view: Any
) -> None:
    inputs, outputs = kafka_io
    put_segment(api, "buyers", "total_spend >= 100", "marketing_email")
    put_segment(api, "sms", "purchase_count >= 1", "marketing_sms")
    put_segment(api, "anyone", "event_count >= 1")
    await inputs.consent("c-1", "marketing_email", "granted")
    await inputs.consent("c-1", "marketing_sms", "granted")
    await inputs.event("c-1", "purchase", amount=150, currency="EUR")
    await wait_until(lambda: redis_view.segments_of("c-1") == {"buyers", "sms", "anyone"}, what="three joins")
    # A join that needs consent is announced once the consent follower has read the customer's
    # partition up to its end (an opt-out sent before that would withhold it).
    joined = await wait_until(lambda: outputs.find("c-1", "buyers", "joined"), what="the announced join")
    assert joined.reason in ("rule_matched", "consent_granted")  # the event or the grant read last

    withdrawal = await inputs.consent("c-1", "marketing_email", "denied")
    left = await wait_until(lambda: outputs.find("c-1", "buyers", "left"), what="the left event")
    assert left.reason == "consent_withdrawn" and left.cause_event_id == withdrawal.event_id
    assert left.cause_at == withdrawal.recorded_at
    assert redis_view.segments_of("c-1") == {"sms", "anyone"} and "c-1" not in redis_view.members("buyers")

    for _ in range(3):  # later events keep matching the rule but must not bring the customer back
        await inputs.event("c-1", "purchase", amount=500, currency="EUR")
    await wait_until(lambda: redis_view.features("c-1").get("purchases") == "4", what="the later events")
    assert "buyers" not in redis_view.segments_of("c-1")
    assert [m.action for m in outputs.of("c-1", "buyers")] == ["joined", "left"]

    grant = await inputs.consent("c-1", "marketing_email", "granted")
    # The first join may itself carry consent_granted (when the grant was read last), so the rejoin is
    # the third change, not the first one with that reason.
    changes = await wait_until(lambda: outputs.of("c-1", "buyers")[2:], what="rejoin")
    rejoined = changes[0]
    assert (rejoined.action, rejoined.reason) == ("joined", "consent_granted")
    assert rejoined.cause_event_id == grant.event_id and "buyers" in redis_view.segments_of("c-1")

    await inputs.consent("c-1", "marketing_sms", "granted", expires_in=1.0)
    expired = await wait_until(lambda: outputs.find("c-1", "sms", "left", "consent_expired"), what="expiry")
    assert expired is not None and "sms" not in redis_view.segments_of("c-1")

    put_segment(api, "today", "last_seen_days < 1")
    almost_a_day_ago = datetime.now(UTC) - timedelta(days=1) + timedelta(seconds=2)
    await inputs.event("c-4", "click", occurred_at=almost_a_day_ago)
    await wait_until(lambda: outputs.find("c-4", "today", "joined"), what="the join on a recent event")
    await wait_until(lambda: outputs.find("c-1", "today", "joined"), what="re-evaluation of known customers")
    aged = await wait_until(lambda: outputs.find("c-4", "today", "left"), what="the sweep to age it out")
    assert aged.reason == "rule_unmatched" and "today" not in redis_view.segments_of("c-4")

    erasure = ErasureRequested(event_id=new_event_id(), customer_id="c-1", requested_at=datetime.now(UTC))
    await inputs.send("erasure.requests", "c-1", erasure.to_bytes())
    await wait_until(lambda: not redis_view.segments_of("c-1"), what="erasure")
    # c-1 joined "today" when it was defined (segment_changed); Redis is cleared before the lefts go out.
    erased = {"buyers", "anyone", "today"}
    await wait_until(
        lambda: {m.segment_id for m in outputs.of("c-1") if m.reason == "erased"} == erased, what="lefts"
    )
    assert redis_view.features("c-1") == {} and "c-1" not in redis_view.members("anyone")
    metrics = api.get("/metrics").text
    assert "segwarden_segmenter_eviction_latency_seconds_count 1.0" in metrics
    assert "segwarden_segmenter_compliance_violations_total 0.0" in metrics


async def test_bad_records_go_to_the_dead_letter_topic_and_redeliveries_count_once(
    api: httpx.Client, kafka_io: Any, redis_view: Any, kafka_bootstrap: str, io_prefix: str
) -> None:
    inputs, outputs = kafka_io
    put_segment(api, "big", "total_spend >= 150")
    await inputs.send("customer.events", "c-2", b"{not json")
    await inputs.send(
        "customer.events", "c-2", b'{"event_id": "x", "customer_id": "c-2", "type": "purchase"}'
    )
    same = new_event_id()
    for _ in range(3):
        await inputs.event("c-2", "purchase", event_id=same, amount=100, currency="EUR")
    await inputs.event("c-2", "click")
    await wait_until(lambda: redis_view.features("c-2").get("events") == "2", what="the click")
    assert redis_view.features("c-2")["spend"] == "100" and "big" not in redis_view.segments_of("c-2")

    consumer = AIOKafkaConsumer(
        io_prefix + "customer.events.dlq", bootstrap_servers=kafka_bootstrap, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        records = [await asyncio.wait_for(consumer.getone(), 30) for _ in range(2)]
        letters = [DeadLetter.model_validate_json(r.value) for r in records]
    finally:
        await consumer.stop()
    assert letters[0].value == "{not json" and "json" in letters[0].error.lower()
    assert "occurred_at" in letters[1].error and letters[1].topic == io_prefix + "customer.events"
    await inputs.event("c-2", "purchase", amount=60, currency="EUR")  # the stream goes on
    await wait_until(lambda: "big" in redis_view.segments_of("c-2"), what="the join after the bad records")


async def test_changes_committed_before_a_crash_are_published_later(
    api: httpx.Client, kafka_io: Any, redis_view: Any
) -> None:
    inputs, outputs = kafka_io
    put_segment(api, "relay", "event_count >= 1")
    await inputs.event("c-6", "click")
    await wait_until(lambda: outputs.find("c-6", "relay", "joined"), what="the join")

    def leftover(segment: str) -> MembershipChanged:
        now = datetime.now(UTC)
        return MembershipChanged(
            event_id=new_event_id(),
            segment_id=segment,
            customer_id="c-6",
            action="joined",
            reason="rule_matched",
            cause_event_id=None,
            cause_at=None,
            at=now,
        )

    # What a worker killed between its Redis commit and the broker's ack leaves behind.
    valid, stale = leftover("relay"), leftover("no-such-segment")
    outbox = f"{redis_view.ns}{{c:c-6}}:outbox"
    redis_view.client.rpush(outbox, valid.model_dump_json(), stale.model_dump_json())
    await wait_until(lambda: any(m.event_id == valid.event_id for m in outputs.messages), what="the relay")
    await wait_until(lambda: redis_view.client.llen(outbox) == 0, what="the outbox to empty")
    assert not any(m.event_id == stale.event_id for m in outputs.messages)  # fail closed: no such segment
