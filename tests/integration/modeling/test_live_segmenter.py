"""Training reads what a running segmenter stored from its topics: the source and the service agree."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from aiokafka import AIOKafkaProducer
from sklearn.metrics import adjusted_rand_score

from services.segmenter.adapters.redis_store import RedisCustomerStore
from services.segmenter.domain.feature_values import rule_features
from services.segmenter.modeling.assign import ModelAssigner
from services.segmenter.modeling.sources import RedisTrainingSource
from services.segmenter.modeling.store import FileModelStore
from services.segmenter.modeling.synthetic import population
from services.segmenter.modeling.trainer import TrainingRun, train_model
from services.segmenter.modeling.training import TrainingSpec
from shared.events import ConsentChanged, CustomerEvent, new_event_id
from tests.integration.modeling.conftest import Person, event_plan
from tests.support import RecordedTrainings


def event(customer_id: str, kind: str, at: float, amount: float | None) -> CustomerEvent:
    attributes = {} if amount is None else {"amount": round(amount, 2), "currency": "EUR"}
    occurred = datetime.fromtimestamp(at, UTC)
    return CustomerEvent(
        event_id=new_event_id(),
        customer_id=customer_id,
        type=kind,
        occurred_at=occurred,
        source="test",
        attributes=attributes,
    )


def consent(customer_id: str, status: str) -> ConsentChanged:
    now = datetime.now(UTC)
    return ConsentChanged(
        event_id=new_event_id(),
        customer_id=customer_id,
        purpose="profiling",
        status=status,  # type: ignore[arg-type]
        previous_status=None,
        reason="user",
        source="test",
        jurisdiction="GDPR",
        policy_version="2026-03",
        recorded_at=now,
        expires_at=None,
    )


async def publish(bootstrap: str, prefix: str, people: Sequence[Person]) -> dict[str, int]:
    """Send everyone's consent and events; returns the number of events per customer."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20)
    await producer.start()
    counts, now = {}, time.time()
    try:
        for customer_id, features, status in people:
            if status is not None:
                await producer.send(
                    prefix + "consent.changes",
                    consent(customer_id, status).to_bytes(),
                    key=customer_id.encode(),
                )
            plan = event_plan(features, now)
            counts[customer_id] = len(plan)
            for kind, at, amount in plan:
                value = event(customer_id, kind, at, amount).to_bytes()
                await producer.send(prefix + "customer.events", value, key=customer_id.encode())
        await producer.flush()
    finally:
        await producer.stop()
    return counts


async def stored_everything(customers: RedisCustomerStore, counts: dict[str, int], deadline: float) -> None:
    pending = set(counts)
    while pending and time.monotonic() < deadline:
        for customer_id in list(pending):
            if int((await customers.read(customer_id)).features.get("events", 0)) == counts[customer_id]:
                pending.discard(customer_id)
        await asyncio.sleep(0.2)
    assert not pending, f"{len(pending)} customers' events never reached Redis"


async def test_training_on_what_the_running_segmenter_stored(
    start_service, kafka_bootstrap: str, topic_prefix: str, customers: RedisCustomerStore, tmp_path: Path
) -> None:
    start_service("segmenter").wait_ready()
    groups = {f"c-{i}": group for i, (group, _) in enumerate(population(12, seed=6))}
    people: list[Person] = [
        (f"c-{i}", features, "granted") for i, (_, features) in enumerate(population(12, seed=6))
    ]
    people += [
        (f"d-{i}", features, ("denied", None)[i % 2]) for i, (_, features) in enumerate(population(4, seed=5))
    ]
    counts = await publish(kafka_bootstrap, topic_prefix, people)
    await stored_everything(customers, counts, time.monotonic() + 120)
    store = FileModelStore(tmp_path / "models", b"k" * 32)
    source = RedisTrainingSource(customers, 3)
    run = TrainingRun(TrainingSpec("live", 3), store, RecordedTrainings())
    model = await train_model(source, run)
    assert model.metadata.n_training == len(groups) == 36 and source.without_consent == 12
    assigner = ModelAssigner(store)
    assigner.refresh()
    ids, now = sorted(groups), time.time()
    found = [
        assigner.assign("live", rule_features((await customers.read(i)).features, now), {"profiling"})
        for i in ids
    ]
    assert adjusted_rand_score([groups[i] for i in ids], found) > 0.9
