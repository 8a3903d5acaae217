"""Readiness: consent.state is loaded into Redis before ready; HTTP answers while the broker is away."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import httpx

from services.segmenter.settings import SegmenterSettings
from shared.embedded import free_port
from shared.events import ConsentStateSnapshot, ConsentStatus, PurposeState, new_event_id
from shared.kafka import ensure_topics
from tests.integration.segmenter.conftest import ADMIN, FAST, put_segment, wait_until
from tests.support import http_client, wait_for


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
    assert (redis_view.consent("c-3", "marketing_email") or "").startswith("granted|")
    with httpx.Client(base_url=service.url, headers=ADMIN) as client:
        put_segment(client, "mail", "event_count >= 1", "marketing_email")
    await inputs.event("c-3", "click")
    await wait_until(lambda: outputs.find("c-3", "mail", "joined"), what="a join on the loaded consent")


def test_http_answers_while_the_broker_is_away(start_service: Any) -> None:
    away = f"127.0.0.1:{free_port()}"
    service = start_service("segmenter", KAFKA_BOOTSTRAP_SERVERS=away)

    def answers() -> httpx.Response | None:
        try:
            return http_client.get(f"{service.url}/readyz", timeout=5)
        except httpx.HTTPError:
            return None

    ready = wait_for(answers, 60, "HTTP to answer")
    assert ready.status_code == 503 and "kafka" in ready.json()["reasons"]
    assert "consent" in ready.json()["reasons"] and "definitions" in ready.json()["reasons"]
    assert http_client.get(f"{service.url}/healthz").status_code == 200
    listing = http_client.get(f"{service.url}/v1/segments", headers=ADMIN)
    assert listing.status_code == 503 and "broker" in listing.json()["detail"]


def _state(customer: str, status: ConsentStatus, sequence: int) -> bytes:
    state = PurposeState(
        status=status, effective=status == "granted", recorded_at=datetime.now(UTC), sequence=sequence
    )
    return ConsentStateSnapshot(
        event_id=new_event_id(),
        customer_id=customer,
        purposes={"marketing_email": state},
        updated_at=datetime.now(UTC),
    ).to_bytes()


async def test_an_opt_out_made_while_the_segmenter_was_down_is_announced_after_the_restart(
    start_service: Any, kafka_io: Any
) -> None:
    """Withdrawn and granted again while the segmenter was down: the latest consent.state
    snapshot (granted) must not jump over the withdrawal, whose `left` campaign tools need."""
    inputs, outputs = kafka_io
    service = start_service("segmenter", **FAST).wait_ready()
    with httpx.Client(base_url=service.url, headers=ADMIN) as client:
        put_segment(client, "mail", "event_count >= 1", "marketing_email")
    await inputs.consent("c-down", "marketing_email", "granted", sequence=1)
    await inputs.send("consent.state", "c-down", _state("c-down", "granted", 1))
    await inputs.event("c-down", "click")
    await wait_until(lambda: outputs.find("c-down", "mail", "joined"), what="the join")
    service.stop()
    changes: list[tuple[int, ConsentStatus]] = [(2, "denied"), (3, "granted")]
    for sequence, status in changes:  # as the consent service publishes them
        await inputs.consent("c-down", "marketing_email", status, sequence=sequence)
        await inputs.send("consent.state", "c-down", _state("c-down", status, sequence))
    service.start().wait_ready()
    await wait_until(
        lambda: [m.action for m in outputs.of("c-down", "mail")] == ["joined", "left", "joined"],
        what="the opt-out's left, then the join again",
    )
    assert outputs.of("c-down", "mail")[1].reason == "consent_withdrawn"
