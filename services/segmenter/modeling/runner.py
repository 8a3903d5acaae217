"""The composition root of `segwarden model train`: real adapters from settings, a rich progress display."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import redis.asyncio as aioredis
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

from services.audit.settings import AuditSettings
from services.segmenter.adapters.redis_keys import KeyLayout
from services.segmenter.adapters.redis_store import RedisCustomerStore
from services.segmenter.modeling.ledger import SqlAuditLedger
from services.segmenter.modeling.sources import RedisTrainingSource
from services.segmenter.modeling.store import model_store
from services.segmenter.modeling.trainer import TrainingRun, train_model
from services.segmenter.modeling.training import TrainedModel, TrainingSpec
from services.segmenter.settings import SegmenterSettings

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
        customers = RedisCustomerStore(client, KeyLayout(settings.redis_namespace))
        yield RedisTrainingSource(customers, settings.topic_partitions)
    finally:
        await client.aclose()  # type: ignore[attr-defined]  # redis>=5; the stubs predate it


async def run_training(settings: SegmenterSettings, spec: TrainingSpec, console: Console) -> TrainedModel:
    """Train `spec` on the consented customers in Redis, showing progress on `console`."""
    run = TrainingRun(spec, model_store(settings), SqlAuditLedger(AuditSettings()))
    async with redis_source(settings) as source:
        with Progress(*COLUMNS, console=console) as progress:
            scan = progress.add_task(
                "reading customers with profiling consent", total=await source.population()
            )
            run.on_scanned = lambda looked_at: progress.update(scan, completed=looked_at)
            run.on_step = lambda step: progress.update(scan, description=step)
            return await train_model(source, run)
