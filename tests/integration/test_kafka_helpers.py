"""Kafka helpers against the real broker: topics, dead letters, reconnecting clients."""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaConsumer
from kafka.admin import KafkaAdminClient

from shared.deadletter import DeadLetters, decode_or_dead_letter
from shared.embedded import EmbeddedBroker, free_port
from shared.events import CustomerEvent, DeadLetter
from shared.kafka import (
    ensure_topics,
    make_consumer,
    make_producer,
    start_client,
    topic_configs,
    topic_names,
)
from shared.settings import ServiceSettings
from shared.topics import CUSTOMER_EVENTS


def settings_for(bootstrap: str, prefix: str) -> ServiceSettings:
    return ServiceSettings(kafka_bootstrap_servers=bootstrap, topic_prefix=prefix, topic_partitions=3)


def test_ensure_topics_creates_every_topic_once(kafka_bootstrap: str, topic_prefix: str) -> None:
    settings = settings_for(kafka_bootstrap, topic_prefix)
    created = ensure_topics(settings)
    expected = {plan.name for plan in topic_names(settings).plan()}
    assert set(created) == expected
    assert ensure_topics(settings) == []
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:
        described = {t["name"]: t for t in admin.describe_topics([f"{topic_prefix}customer.events"])}
        assert len(described[f"{topic_prefix}customer.events"]["partitions"]) == 3
    finally:
        admin.close()


def test_topics_get_their_retention_and_a_changed_setting_reaches_existing_topics(
    kafka_bootstrap: str, topic_prefix: str
) -> None:
    settings = settings_for(kafka_bootstrap, topic_prefix)
    ensure_topics(settings)
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:
        configs = topic_configs(admin, [plan.name for plan in topic_names(settings).plan()])
        hour = 3_600_000
        assert configs[f"{topic_prefix}customer.events"]["retention.ms"] == str(72 * hour)
        assert configs[f"{topic_prefix}erasure.requests"]["retention.ms"] == str(72 * hour)
        assert configs[f"{topic_prefix}customer.events.dlq"]["retention.ms"] == str(72 * hour)
        assert configs[f"{topic_prefix}segment.membership"]["retention.ms"] == str(168 * hour)
        assert configs[f"{topic_prefix}audit.log"]["retention.ms"] == str(730 * 24 * hour)
        state = configs[f"{topic_prefix}consent.state"]
        assert state["cleanup.policy"] == "compact" and state["max.compaction.lag.ms"] == str(24 * hour)
        # Shorter settings on the same topics: nothing created, every retention altered.
        shorter = settings.model_copy(
            update={"topic_retention_input_hours": 2, "topic_retention_erasure_hours": 3}
        )
        assert ensure_topics(shorter) == []
        configs = topic_configs(admin, [f"{topic_prefix}customer.events", f"{topic_prefix}erasure.requests"])
        assert configs[f"{topic_prefix}customer.events"]["retention.ms"] == str(2 * hour)
        assert configs[f"{topic_prefix}erasure.requests"]["retention.ms"] == str(3 * hour)
    finally:
        admin.close()


async def test_bad_record_goes_to_dead_letters_and_good_one_decodes(
    kafka_bootstrap: str, topic_prefix: str
) -> None:
    settings = settings_for(kafka_bootstrap, topic_prefix)
    await asyncio.to_thread(ensure_topics, settings)
    names = topic_names(settings)
    topic = names.name(CUSTOMER_EVENTS)
    good = CustomerEvent.model_validate_json(
        b'{"event_id":"e1","customer_id":"c-1","type":"login","occurred_at":"2026-11-29T10:00:00Z",'
        b'"source":"app","attributes":{}}'
    )
    producer = make_producer(settings, "test")
    await producer.start()
    consumer = make_consumer(settings, topic, group_id=f"{topic_prefix}g", client_id="test")
    await consumer.start()
    try:
        await producer.send_and_wait(topic, b'{"customer_id": 5}', key=b"c-1")
        await producer.send_and_wait(topic, good.to_bytes(), key=b"c-1")
        decoded: list[CustomerEvent | None] = []
        async with asyncio.timeout(30):
            while len(decoded) < 2:
                record = await consumer.getone()
                decoded.append(
                    await decode_or_dead_letter(DeadLetters(producer, b"k" * 32), record, CustomerEvent)
                )
        assert decoded == [None, good]
        dlq = AIOKafkaConsumer(
            names.dlq(CUSTOMER_EVENTS), bootstrap_servers=kafka_bootstrap, auto_offset_reset="earliest"
        )
        await dlq.start()
        try:
            async with asyncio.timeout(30):
                letter = DeadLetter.model_validate_json((await dlq.getone()).value)
        finally:
            await dlq.stop()
        assert letter.topic == topic and letter.offset == 0
        assert "customer_id" in letter.error and letter.value == '{"customer_id": 5}'
    finally:
        await consumer.stop()
        await producer.stop()


async def test_start_client_waits_for_a_broker_that_starts_late(topic_prefix: str) -> None:
    port = free_port()
    settings = settings_for(f"127.0.0.1:{port}", topic_prefix)
    starting = asyncio.create_task(start_client(lambda: make_producer(settings, "late"), "producer"))
    await asyncio.sleep(1.0)
    assert not starting.done()
    broker = EmbeddedBroker(port).start()
    try:
        async with asyncio.timeout(30):
            producer = await starting
        await producer.send_and_wait(f"{topic_prefix}late", b"x")
        await producer.stop()
    finally:
        broker.stop()
