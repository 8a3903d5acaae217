"""consent.state is loaded into Redis before the segmenter reports ready."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import httpx

from services.segmenter.settings import SegmenterSettings
from shared.events import ConsentStateSnapshot, PurposeState, new_event_id
from shared.kafka import ensure_topics
from tests.integration.segmenter.conftest import ADMIN, FAST, put_segment, wait_until


async def test_consent_state_is_loaded_before_ready(
    start_service: Any, kafka_io: Any, redis_view: Any, kafka_bootstrap: str
) -> None:
    inputs, outputs = kafka_io
    granted = PurposeState(status="granted", effective=True, recorded_at=datetime.now(UTC))
    snapshot = ConsentStateSnapshot(
        event_id=new_event_id(),
        customer_id="c-3",
        purposes={"marketing_email": granted},
        updated_at=datetime.now(UTC),
    )
    await asyncio.to_thread(
        ensure_topics,
        SegmenterSettings(
            kafka_bootstrap_servers=kafka_bootstrap, topic_prefix=inputs.prefix, topic_partitions=3
        ),
    )
    await inputs.send("consent.state", "c-3", snapshot.to_bytes())
    service = start_service("segmenter", **FAST).wait_ready()
    consent_key = f"{redis_view.ns}{{c:c-3}}:consent"
    assert redis_view.client.hget(consent_key, "marketing_email").startswith("granted|")
    with httpx.Client(base_url=service.url, headers=ADMIN) as client:
        put_segment(client, "mail", "event_count >= 1", "marketing_email")
    await inputs.event("c-3", "click")
    await wait_until(lambda: outputs.find("c-3", "mail", "joined"), what="a join on the loaded consent")
