"""Train a model end to end: consented customers in, a stored, reported and audited model out.

The service layer of `segwarden model train`: ports in, no technology here. A `TrainingSource`
yields the features of the customers whose purpose (profiling) is effective, and only theirs.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from services.segmenter.modeling.feature_vector import FEATURES, feature_vector
from services.segmenter.modeling.report import render_report
from services.segmenter.modeling.store import FileModelStore, ModelExistsError
from services.segmenter.modeling.training import Progress, TrainedModel, TrainingSpec, train
from shared.events import ModelTrained

logger = logging.getLogger(__name__)
PURPOSE = "profiling"


class TrainingSource(Protocol):
    """Feature mappings (contract names) of the customers whose `purpose` is effective now."""

    without_consent: int  # customers passed over so far, their features unread

    async def population(self) -> int | None:
        """How many customers a scan will look at, if known (for a progress bar)."""
        ...

    def consented_features(self, purpose: str) -> AsyncIterator[Mapping[str, object]]: ...


class TrainingLedger(Protocol):
    async def record(self, training: ModelTrained) -> None:
        """Hand the training to the audit ledger; raises when it was not accepted."""
        ...


class LedgerError(RuntimeError):
    """The training could not be handed to the audit ledger, so its model was not kept."""


@dataclass
class TrainingRun:
    spec: TrainingSpec
    store: FileModelStore
    ledger: TrainingLedger
    on_scanned: Callable[[int], None] = lambda _: None  # customers looked at so far, consented or not
    on_step: Progress = lambda _: None


async def collect(source: TrainingSource, run: TrainingRun) -> np.ndarray:
    """The feature vectors of the consented customers (only these are ever kept)."""
    vectors = []
    async for features in source.consented_features(PURPOSE):
        vectors.append(feature_vector(features))
        run.on_scanned(len(vectors) + source.without_consent)
    run.on_scanned(len(vectors) + source.without_consent)
    return np.asarray(vectors, dtype=float).reshape(len(vectors), len(FEATURES))


async def train_model(source: TrainingSource, run: TrainingRun) -> TrainedModel:
    """Scan, fit, store with its report, and record `model_trained`; raises before storing on failure."""
    if run.store.exists(run.spec.model_id):
        # A refit numbers its clusters afresh, so segments naming a cluster would silently change.
        raise ModelExistsError(f"model {run.spec.model_id!r} exists: train a new id and point segments at it")
    samples = await collect(source, run)
    logger.info(
        "training set read", extra={"n_training": len(samples), "without_consent": source.without_consent}
    )
    model = train(run.spec, samples, run.on_step)
    run.on_step("writing the model and its report")
    run.store.save(model.metadata, model.pipeline)
    run.store.save_report(model.metadata.id, render_report(model))
    await _record(run, model, source.without_consent)
    return model


async def _record(run: TrainingRun, model: TrainedModel, without_consent: int) -> None:
    meta = model.metadata
    _, checksum = run.store.metadata_and_checksum(meta.id)
    training = ModelTrained(
        event_id=f"model_trained:{meta.id}:{uuid.uuid4().hex}",
        model_id=meta.id,
        purpose=meta.purpose,
        algorithm=meta.algorithm,
        clusters=meta.clusters,
        features=tuple(meta.features),
        n_training=meta.n_training,
        n_without_consent=without_consent,
        cluster_sizes=tuple(meta.cluster_sizes),
        silhouette=meta.silhouette,
        sha256=checksum,
        trained_at=meta.created_at,
    )
    try:
        await run.ledger.record(training)
    except Exception as exc:
        run.store.remove(meta.id)  # an unaudited model must not be used
        raise LedgerError(f"model {meta.id!r} not kept: its audit record was not accepted: {exc}") from exc
