"""A dead letter is bounded and pseudonymized: a 900 KB invalid event reaches its .dlq on the real broker."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer

from shared.events import new_event_id
from shared.pseudonym import pseudonymize
from tests.integration.segmenter.conftest import FAST, wait_until
from tests.integration.segmenter.test_input_limits import dead_letters

PSEUDONYM_KEY = "ab" * 32


def purchase(customer: str, amount: float) -> bytes:
    return json.dumps(
        {
            "event_id": new_event_id(),
            "customer_id": customer,
            "type": "purchase",
            "occurred_at": datetime.now(UTC).isoformat(),
            "source": "test",
            "attributes": {"amount": amount, "currency": "EUR"},
        }
    ).encode()


def huge_event(customer: str) -> bytes:
    """About 900 KB, over the attribute limits, and made of quotes that JSON escaping doubles: the
    whole value inside a dead letter would pass the producer's 1 MiB request limit."""
    return json.dumps(
        {
            "event_id": new_event_id(),
            "customer_id": customer,
            "type": "click",
            "occurred_at": datetime.now(UTC).isoformat(),
            "source": "test",
            "attributes": {"tags": ['"'] * 150_000},
        }
    ).encode()


async def test_a_900_kb_invalid_event_is_dead_lettered_bounded_and_the_rest_of_its_batch_processed(
    start_service, kafka_io: Any, redis_view: Any, kafka_bootstrap: str, topic_prefix: str
) -> None:
    inputs, _ = kafka_io
    start_service("segmenter", PSEUDONYM_KEY=PSEUDONYM_KEY, **FAST).wait_ready()
    big = huge_event("c-big")
    assert 850_000 < len(big) < 1_000_000
    await inputs.send("customer.events", "c-big", purchase("c-big", 5), wait=False)
    await inputs.send("customer.events", "c-big", big, wait=False)
    await inputs.send("customer.events", "c-big", purchase("c-big", 7), wait=False)
    await inputs.send("customer.events", "c-other", purchase("c-other", 2.5), wait=False)
    await inputs.producer.flush()

    await wait_until(lambda: redis_view.features("c-other").get("spend") == "2.5", what="the other customer")
    await wait_until(lambda: redis_view.features("c-big").get("purchases") == "2", what="both good purchases")
    [letter] = await dead_letters(kafka_bootstrap, f"{topic_prefix}customer.events.dlq", 1)
    assert "attributes" in letter.error
    assert letter.truncated and letter.value_bytes == len(big)
    assert len(letter.value.encode()) <= 4096 and big.decode().startswith(letter.value)
    pseudonym = pseudonymize(bytes.fromhex(PSEUDONYM_KEY), "c-big")
    assert letter.key_pseudonym == pseudonym
    assert await dead_letter_keys(kafka_bootstrap, f"{topic_prefix}customer.events.dlq") == [
        pseudonym.encode()
    ]


async def dead_letter_keys(bootstrap: str, topic: str) -> list[bytes | None]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    try:
        batch = await consumer.getmany(timeout_ms=5000)
        return [record.key for records in batch.values() for record in records]
    finally:
        await consumer.stop()
