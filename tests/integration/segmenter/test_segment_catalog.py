"""A large catalogue of segments that all need the same consent: a customer in all of them joins
them in one step, an opt-out announces every `left` exactly once and nothing brings them back,
and segments defined after the customers arrive get them from the background re-evaluation."""

from __future__ import annotations

from collections import Counter
from typing import Any

import httpx
import pytest

from services.segmenter.adapters.kafka_publisher import customer_partition
from tests.integration.segmenter.conftest import put_segment, wait_until
from tests.support import http_client

SEGMENTS = 300
PARTITIONS = 3  # module_segmenter's TOPIC_PARTITIONS


@pytest.fixture
def io_prefix(shared_prefix: str) -> str:
    """This module's tests share one segmenter, so its topics."""
    return shared_prefix


def define(api: httpx.Client, prefix: str, count: int, rule: str) -> set[str]:
    ids = {f"{prefix}-{i:03d}" for i in range(count)}
    for segment_id in sorted(ids):
        put_segment(api, segment_id, rule, "marketing_email")
    return ids


def same_partition(customer: str, candidate_prefix: str) -> str:
    """A customer id on the same partition as `customer` (the stream handles a partition in order)."""
    wanted = customer_partition(customer, PARTITIONS)
    return next(
        c
        for c in (f"{candidate_prefix}-{i}" for i in range(100))
        if customer_partition(c, PARTITIONS) == wanted
    )


def last_action(outputs: Any, customer: str, segment: str) -> str | None:
    messages = outputs.of(customer, segment)
    return messages[-1].action if messages else None


async def test_an_opt_out_from_300_segments_announces_each_left_once_and_no_join_after(
    api: httpx.Client, kafka_io: Any, redis_view: Any
) -> None:
    inputs, outputs = kafka_io
    segments = define(api, "many", SEGMENTS, "profile.catalogue >= 1")
    await inputs.consent("cat-1", "marketing_email", "granted")
    await inputs.event("cat-1", "profile_update", catalogue=1)
    await wait_until(
        lambda: all(last_action(outputs, "cat-1", s) == "joined" for s in segments),
        timeout=60,
        what="the 300 joins announced",
    )
    assert redis_view.segments_of("cat-1") == segments

    withdrawal = await inputs.consent("cat-1", "marketing_email", "denied")
    await wait_until(
        lambda: all(last_action(outputs, "cat-1", s) == "left" for s in segments),
        timeout=60,
        what="the 300 lefts announced",
    )
    # A later event matches every rule again; a witness on the same partition, handled after it,
    # joins a segment of its own: once its join is out, the customer's event has been handled.
    await inputs.event("cat-1", "profile_update", catalogue=2)
    witness = same_partition("cat-1", "witness")
    put_segment(api, "witnessed", "profile.witness >= 1")
    await inputs.event(witness, "profile_update", witness=1)
    await wait_until(lambda: outputs.find(witness, "witnessed", "joined"), what="the witness's join")

    mine = outputs.of("cat-1")
    lefts = [m for m in mine if m.action == "left"]
    assert Counter(m.segment_id for m in lefts) == Counter(segments)  # each left once
    assert len({m.event_id for m in lefts}) == SEGMENTS
    assert all(m.reason == "consent_withdrawn" and m.cause_event_id == withdrawal.event_id for m in lefts)
    assert Counter(m.segment_id for m in mine if m.action == "joined") == Counter(segments)  # no rejoin
    assert redis_view.segments_of("cat-1") == set() and redis_view.features("cat-1")["p:catalogue"] == "2"
    assert all("cat-1" not in redis_view.members(s) for s in segments)
    assert not redis_view.outbox("cat-1")


async def test_segments_defined_after_the_customers_get_them_from_the_background(
    api: httpx.Client, kafka_io: Any, redis_view: Any, segmenter: Any
) -> None:
    inputs, outputs = kafka_io
    customers = {f"late-{i}" for i in range(30)}
    for customer in sorted(customers):
        await inputs.consent(customer, "marketing_email", "granted", wait=False)
        await inputs.event(customer, "profile_update", wait=False, late=1)
    await inputs.producer.flush()
    await wait_until(
        lambda: all(redis_view.features(c).get("p:late") == "1" for c in customers), what="the events"
    )
    segments = define(api, "late", 50, "profile.late >= 1")  # each PUT answers before its re-evaluation

    def done() -> bool:
        metrics = http_client.get(f"{segmenter.url}/metrics", timeout=5).text
        return "segwarden_segmenter_reevaluation_pending_segments 0.0" in metrics

    await wait_until(
        lambda: (
            done()
            and all(redis_view.members(s) == customers for s in segments)
            and all(last_action(outputs, c, s) == "joined" for c in customers for s in segments)
        ),
        timeout=90,
        what="every customer in every late segment, announced",
    )
    joins = Counter((m.customer_id, m.segment_id) for m in outputs.messages if m.segment_id in segments)
    assert set(joins.values()) == {1}
