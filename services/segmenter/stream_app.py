"""The faust app of the segmenter: agents that hand each input to its handler, nothing more.

It runs in the HTTP server's event loop (started and stopped by the FastAPI lifespan), with
faust's own web server off. faust coordinates the group and runs consent.state and
erasure.requests; customer.events and consent.changes are read by plain consumers that follow its
assignment (adapters/kafka_events.py, adapters/kafka_consent.py): the topics are co-partitioned,
so the partitions of consent.state this worker owns are those of every customer topic.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka.structs import ConsumerRecord

from services.segmenter.adapters.faust_transport import SegmenterFaustApp
from services.segmenter.handlers import StreamHandlers
from services.segmenter.metrics import OWNED_PARTITIONS
from services.segmenter.settings import SegmenterSettings
from shared.kafka import clamp_lag, faust_credentials, topic_names
from shared.metrics import CONSUMER_LAG
from shared.supervise import for_each, handle_or_dead_letter
from shared.topics import CONSENT_STATE, ERASURE_REQUESTS

log = logging.getLogger(__name__)


def as_record(event: Any) -> ConsumerRecord:
    """faust's message as the aiokafka record the shared dead-letter helpers take."""
    m = event.message
    return ConsumerRecord(
        topic=m.topic,
        partition=m.partition,
        offset=m.offset,
        timestamp=int(m.timestamp * 1000),
        timestamp_type=m.timestamp_type,
        key=m.key,
        value=m.value,
        checksum=None,
        serialized_key_size=m.serialized_key_size or 0,
        serialized_value_size=m.serialized_value_size or 0,
        headers=(),
    )


def create_stream_app(settings: SegmenterSettings, handlers: StreamHandlers) -> SegmenterFaustApp:
    """Each agent waits out Redis or the broker (an input is never skipped: handlers are idempotent)
    and dead-letters an input that fails otherwise (shared.supervise.handle_or_dead_letter)."""
    names = topic_names(settings)
    app = SegmenterFaustApp(
        settings.consumer_group,
        broker=[f"kafka://{server}" for server in settings.bootstrap_servers],
        broker_credentials=faust_credentials(settings),
        # faust's default data directory is relative to the working directory.
        datadir=str(settings.data_dir.resolve() / "faust"),
        web_enabled=False,
        web_bind="127.0.0.1",
        web_port=settings.segmenter_faust_web_port,
        broker_session_timeout=settings.kafka_session_timeout_ms / 1000,
        broker_heartbeat_interval=settings.kafka_heartbeat_interval_ms / 1000,
        broker_rebalance_timeout=settings.kafka_session_timeout_ms / 1000,
        topic_partitions=settings.topic_partitions,
        consumer_auto_offset_reset="earliest",
        producer_linger_ms=settings.kafka_linger_ms,
    )
    app.fetch_max_wait_ms = settings.kafka_fetch_max_wait_ms

    def topic(spec: Any) -> Any:
        return app.topic(
            names.name(spec),
            key_serializer="raw",
            value_serializer="raw",
            partitions=settings.topic_partitions,
        )

    def one_by_one(spec: Any, handle: Callable[[ConsumerRecord], Awaitable[None]]) -> None:
        async def agent(stream: Any) -> None:
            async for event in stream.events():
                record = as_record(event)
                await handle_or_dead_letter(handlers.dead_letters, spec.base, [record], for_each(handle))

        app.agent(topic(spec), name=spec.base)(agent)

    one_by_one(CONSENT_STATE, handlers.on_consent_state)
    one_by_one(ERASURE_REQUESTS, handlers.on_erasure)
    return app


def record_lag(app: SegmenterFaustApp) -> None:
    """Consumer lag per owned partition, for metrics only (clamped: see shared.kafka.clamp_lag)."""
    consumer = app.consumer
    for tp in consumer.assignment():
        # faust keeps the committed offsets only in this attribute; read-only use.
        committed = consumer._committed_offset.get(tp)  # type: ignore[attr-defined]
        lag = clamp_lag(consumer.highwater(tp), committed)
        CONSUMER_LAG.labels(app.conf.id, tp.topic, str(tp.partition)).set(lag)


def on_assignment(
    app: SegmenterFaustApp, settings: SegmenterSettings, follow: Callable[[list[int]], Awaitable[None]]
) -> None:
    """Call `follow` with the owned partitions whenever faust's assignment changes, and set the
    owned-partitions gauge then (the sweep sets it too, but only every SEGMENTER_SWEEP_INTERVAL_S)."""

    async def revoked(sender: Any, revoked: set[Any], **_: Any) -> None:
        # Before the partitions move on: stop reading them (the new owner starts after this).
        gone = {tp.partition for tp in revoked}
        kept = [p for p in owned_partitions(app, settings) if p not in gone]
        OWNED_PARTITIONS.set(len(kept))
        await follow(kept)

    async def assigned(sender: Any, assigned: set[Any], **_: Any) -> None:
        owned = owned_partitions(app, settings)
        OWNED_PARTITIONS.set(len(owned))
        await follow(owned)

    app.on_partitions_revoked.connect(revoked)  # type: ignore[arg-type]  # faust types receivers loosely
    app.on_partitions_assigned.connect(assigned)  # type: ignore[arg-type]


def owned_partitions(app: SegmenterFaustApp, settings: SegmenterSettings) -> list[int]:
    """Partitions of the customer topics this worker owns now (co-partitioned: one list for all)."""
    followed = topic_names(settings).name(CONSENT_STATE)
    try:
        assignment = app.consumer.assignment()
    except Exception:  # before the consumer exists there is nothing owned
        return []
    return sorted(tp.partition for tp in assignment if tp.topic == followed)
