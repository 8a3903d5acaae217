"""The composition root of `segwarden model train`: real adapters from settings, a rich progress display."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import redis.asyncio as aioredis
from aiokafka.errors import KafkaError
from kafka.errors import KafkaError as KafkaAdminError
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

from services.segmenter.adapters.kafka_trainings import KafkaTrainingPublisher
from services.segmenter.adapters.redis_keys import KeyLayout
from services.segmenter.adapters.redis_store import RedisCustomerStore
from services.segmenter.modeling.sources import RedisTrainingSource
from services.segmenter.modeling.store import model_store
from services.segmenter.modeling.trainer import LedgerError, TrainingRun, train_model
from services.segmenter.modeling.training import TrainedModel, TrainingSpec
from services.segmenter.settings import SegmenterSettings
from shared import topics
from shared.kafka import ensure_topics, make_producer, topic_names
from shared.pseudonym import load_pseudonym_key

COLUMNS = (
    SpinnerColumn(),
    TextColumn("{task.description}"),
    BarColumn(),
    MofNCompleteColumn(),
    TimeElapsedColumn(),
)


@asynccontextmanager
async def redis_source(settings: SegmenterSettings) -> AsyncIterator[RedisTrainingSource]:
    """The segmenter's own Redis state, through its store adapter."""
    client = aioredis.Redis.from_url(settings.redis_url, decode_responses=True)
    try:
        keys, pseudonym_key = KeyLayout(settings.redis_namespace), load_pseudonym_key(settings)
        customers = RedisCustomerStore(client, keys, pseudonym_key)
        yield RedisTrainingSource(customers, settings.topic_partitions)
    finally:
        await client.aclose()  # type: ignore[attr-defined]  # redis>=5; the stubs predate it


@asynccontextmanager
async def training_publisher(settings: SegmenterSettings) -> AsyncIterator[KafkaTrainingPublisher]:
    """The broker, reached before any customer is read: a training nobody can audit is not run."""
    topic = topic_names(settings).name(topics.MODEL_TRAININGS)
    plans = [plan for plan in topic_names(settings).plan() if plan.name == topic]
    producer = make_producer(settings, "segwarden-model-trainer")
    try:
        await asyncio.to_thread(ensure_topics, settings, plans)
        await producer.start()
    except (KafkaError, KafkaAdminError, OSError) as exc:
        await producer.stop()
        raise LedgerError(f"the broker at {settings.bootstrap_servers} did not answer: {exc!r}") from exc
    try:
        yield KafkaTrainingPublisher(producer, topic)
    finally:
        await producer.stop()


async def run_training(settings: SegmenterSettings, spec: TrainingSpec, console: Console) -> TrainedModel:
    """Train `spec` on the consented customers in Redis, showing progress on `console`."""
    async with training_publisher(settings) as ledger, redis_source(settings) as source:
        run = TrainingRun(spec, model_store(settings), ledger)
        with Progress(*COLUMNS, console=console) as progress:
            scan = progress.add_task(
                "reading customers with profiling consent", total=await source.population()
            )
            run.on_scanned = lambda looked_at: progress.update(scan, completed=looked_at)
            run.on_step = lambda step: progress.update(scan, description=step)
            return await train_model(source, run)
