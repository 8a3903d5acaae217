"""A running segmenter dead-letters inputs over the limits and goes on: rules too big, numbers not finite."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer

from shared.events import DeadLetter, SegmentDefinition, new_event_id
from tests.integration.segmenter.conftest import ADMIN, FAST, wait_until
from tests.support import http_client


async def dead_letters(bootstrap: str, topic: str, wanted: int) -> list[DeadLetter]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    letters: list[DeadLetter] = []
    try:

        async def more() -> bool:
            batch = await consumer.getmany(timeout_ms=500)
            letters.extend(DeadLetter.model_validate_json(r.value) for rs in batch.values() for r in rs)
            return len(letters) >= wanted

        for _ in range(60):
            if await more():
                break
    finally:
        await consumer.stop()
    return letters


def definition(segment_id: str, rule: str) -> bytes:
    return SegmentDefinition(
        event_id=new_event_id(),
        segment_id=segment_id,
        name=segment_id,
        rule=rule,
        updated_at=datetime.now(UTC),
    ).to_bytes()


async def test_a_rule_over_the_limits_on_the_topic_is_dead_lettered_and_readiness_holds(
    start_service, kafka_io: Any, kafka_bootstrap: str, topic_prefix: str
) -> None:
    inputs, _ = kafka_io
    segmenter = start_service("segmenter", **FAST).wait_ready()
    too_many_terms = "or".join(["''"] * 1024)  # within the topic schema's 4,096 characters
    await inputs.send("segment.definitions", "huge", definition("huge", too_many_terms))
    await inputs.send("segment.definitions", "after", definition("after", "event_count >= 1"))

    def status(segment_id: str) -> int:
        return http_client.get(f"{segmenter.url}/v1/segments/{segment_id}", headers=ADMIN).status_code

    await wait_until(lambda: status("after") == 200, what="the definition after the bad one")
    assert status("huge") == 404
    [letter] = await dead_letters(kafka_bootstrap, f"{topic_prefix}segment.definitions.dlq", 1)
    assert "more than 256 terms" in letter.error and "position 1024" in letter.error

    segmenter.stop()  # a restart reads the bad definition again, from the start of the topic
    segmenter.start().wait_ready()
    assert status("after") == 200 and status("huge") == 404


async def test_a_non_finite_number_is_dead_lettered_and_the_rest_of_its_batch_evaluated(
    start_service, kafka_io: Any, redis_view: Any, kafka_bootstrap: str, topic_prefix: str
) -> None:
    inputs, _ = kafka_io
    start_service("segmenter", **FAST).wait_ready()

    def purchase(customer: str, amount: str) -> bytes:
        head = json.dumps(
            {
                "event_id": new_event_id(),
                "customer_id": customer,
                "type": "purchase",
                "occurred_at": datetime.now(UTC).isoformat(),
                "source": "test",
            }
        )
        return (head[:-1] + f', "attributes": {{"amount": {amount}, "currency": "EUR"}}}}').encode()

    # One batch: the bad records sit between good ones of the same customer and of others.
    await inputs.send("customer.events", "c-nan", purchase("c-nan", "5"), wait=False)
    await inputs.send("customer.events", "c-nan", purchase("c-nan", "NaN"), wait=False)
    await inputs.send("customer.events", "c-nan", purchase("c-nan", "Infinity"), wait=False)
    await inputs.send("customer.events", "c-nan", purchase("c-nan", "7"), wait=False)
    await inputs.send("customer.events", "c-ok", purchase("c-ok", "2.5"), wait=False)
    await inputs.producer.flush()

    await wait_until(lambda: redis_view.features("c-ok").get("spend") == "2.5", what="the other customer")
    await wait_until(lambda: redis_view.features("c-nan").get("purchases") == "2", what="both good purchases")
    assert float(redis_view.features("c-nan")["spend"]) == 12.0
    letters = await dead_letters(kafka_bootstrap, f"{topic_prefix}customer.events.dlq", 2)
    assert len(letters) == 2 and all("amount: must be a finite number" in x.error for x in letters)


async def test_tombstones_with_keys_that_are_no_ids_are_dead_lettered_and_a_restart_still_loads(
    start_service, kafka_io: Any, kafka_bootstrap: str, topic_prefix: str
) -> None:
    inputs, _ = kafka_io
    segmenter = start_service("segmenter", **FAST).wait_ready()
    # Not UTF-8, and UTF-8 that is no id: tombstones carry nothing else to check.
    for key in (b"\xff\xfe", b"no spaces allowed"):
        await inputs.producer.send_and_wait(f"{topic_prefix}consent.state", None, key=key)
        await inputs.producer.send_and_wait(f"{topic_prefix}segment.definitions", None, key=key)
    await inputs.send("segment.definitions", "after", definition("after", "event_count >= 1"))
    await wait_until(
        lambda: http_client.get(f"{segmenter.url}/v1/segments/after", headers=ADMIN).status_code == 200,
        what="the definition after the bad tombstones",
    )
    for topic in ("consent.state", "segment.definitions"):
        letters = await dead_letters(kafka_bootstrap, f"{topic_prefix}{topic}.dlq", 2)
        assert len(letters) == 2 and all("tombstone's key is not a" in letter.error for letter in letters)
    # The start-up load reads the compacted topics whole: a bad key there must not stop it.
    segmenter.stop()
    segmenter.start().wait_ready()
