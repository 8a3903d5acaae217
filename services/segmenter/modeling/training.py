"""Fit a clustering `Pipeline` (scaler inside) on minimized feature vectors and describe it.

No I/O: rows come in as mappings, a `TrainedModel` goes out; the store persists it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import sklearn
from sklearn.cluster import KMeans, MiniBatchKMeans
from sklearn.mixture import GaussianMixture
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from services.segmenter.modeling.feature_vector import FEATURES, feature_vector
from services.segmenter.modeling.metadata import ALGORITHMS, ModelMetadata, check_model_id
from services.segmenter.modeling.selection import AUTO_RANGE, Fit, TrainingError, choose_k, silhouette

Progress = Callable[[str], None]
# Fitted attributes that hold one value per training row (KMeans, MiniBatchKMeans: `labels_`).
PER_ROW_ATTRIBUTES = ("labels_",)


@dataclass(frozen=True)
class TrainingSpec:
    model_id: str
    clusters: int | None  # None: choose K by silhouette over AUTO_RANGE
    algorithm: str = "kmeans"
    # A center of fewer customers than this would describe individuals (cf. K_ANONYMITY).
    min_cluster_size: int = 10
    random_state: int = 0


@dataclass(frozen=True)
class TrainedModel:
    pipeline: Pipeline
    metadata: ModelMetadata
    samples: np.ndarray  # the training vectors in original units, for the report
    labels: np.ndarray


def feature_matrix(rows: Iterable[Mapping[str, object]]) -> np.ndarray:
    """One row of `FEATURES` per customer."""
    vectors = [feature_vector(row) for row in rows]
    return np.asarray(vectors, dtype=float).reshape(len(vectors), len(FEATURES))


def train(spec: TrainingSpec, samples: np.ndarray, progress: Progress | None = None) -> TrainedModel:
    """Fit `spec` on `samples`; with `clusters=None`, the K of the best silhouette wins."""
    _check_spec(spec, samples)
    if spec.clusters is not None:
        fit = _fit(spec, spec.clusters, samples)
        _refuse_small_clusters(fit.labels, spec.clusters, spec.min_cluster_size)
        return _describe(spec, fit, samples, None, None)
    say = progress or (lambda _: None)
    fits: dict[int, Fit] = {}
    for k in range(AUTO_RANGE.start, min(AUTO_RANGE.stop, _distinct(samples) + 1)):
        say(f"fitting K={k}")
        fits[k] = _fit(spec, k, samples)
    best, scores, reason = choose_k(fits, spec.min_cluster_size)
    return _describe(spec, fits[best], samples, scores, reason)


def _check_spec(spec: TrainingSpec, samples: np.ndarray) -> None:
    check_model_id(spec.model_id)
    if spec.algorithm not in ALGORITHMS:
        raise TrainingError(f"algorithm {spec.algorithm!r}: use one of {', '.join(ALGORITHMS)}")
    if spec.clusters is not None and spec.clusters < 2:
        raise TrainingError(f"clusters: need at least 2, got {spec.clusters}")
    wanted = max(spec.clusters or AUTO_RANGE.start, 2) * max(spec.min_cluster_size, 1)
    if len(samples) < max(wanted, 3):
        raise TrainingError(
            f"{len(samples)} customers with profiling consent: need at least {max(wanted, 3)} for this model"
        )
    distinct = _distinct(samples)
    if distinct < max(spec.clusters or 2, 2):
        raise TrainingError(
            f"only {distinct} distinct feature vectors: too few for {spec.clusters or 2} clusters"
        )


def _distinct(samples: np.ndarray) -> int:
    return len(np.unique(samples, axis=0))


def _estimator(algorithm: str, k: int, seed: int) -> KMeans | MiniBatchKMeans | GaussianMixture:
    if algorithm == "kmeans":
        return KMeans(n_clusters=k, n_init=4, random_state=seed)
    if algorithm == "minibatch":
        return MiniBatchKMeans(n_clusters=k, n_init=3, batch_size=1024, random_state=seed)
    return GaussianMixture(n_components=k, covariance_type="full", n_init=2, random_state=seed)


def _fit(spec: TrainingSpec, k: int, samples: np.ndarray) -> Fit:
    pipeline = Pipeline(
        [("scale", StandardScaler()), ("cluster", _estimator(spec.algorithm, k, spec.random_state))]
    )
    labels = pipeline.fit(samples).predict(samples)
    _forget_rows(pipeline)
    return Fit(pipeline, labels, silhouette(pipeline, samples, labels, spec.random_state))


def _forget_rows(pipeline: Pipeline) -> None:
    """Drop what the fitted estimators keep per training row (k-means keeps every row's label):
    the stored model is then aggregates only, so no file under DATA_DIR keeps a trace of one
    customer after their erasure. Prediction does not use it."""
    for _, step in pipeline.steps:
        for name in PER_ROW_ATTRIBUTES:
            if hasattr(step, name):
                delattr(step, name)


def _refuse_small_clusters(labels: np.ndarray, k: int, min_size: int) -> None:
    sizes = np.bincount(labels, minlength=k)
    small = [(c, int(n)) for c, n in enumerate(sizes) if n < min_size]
    if small:
        raise TrainingError(
            f"clusters of fewer than {min_size} customers (cluster, size): {small}; "
            "their centers would describe individuals: choose fewer clusters or --clusters auto"
        )


def centers(pipeline: Pipeline) -> np.ndarray:
    """The cluster centers in the features' own units (the scaler's inverse)."""
    model = pipeline["cluster"]
    scaled = model.means_ if isinstance(model, GaussianMixture) else model.cluster_centers_
    return pipeline["scale"].inverse_transform(scaled)


def _describe(
    spec: TrainingSpec,
    fit: Fit,
    samples: np.ndarray,
    scores: dict[str, float | None] | None,
    reason: str | None,
) -> TrainedModel:
    k = len(centers(fit.pipeline))
    metadata = ModelMetadata(
        id=spec.model_id,
        created_at=datetime.now(UTC),
        algorithm=spec.algorithm,
        clusters=k,
        features=list(FEATURES),
        n_training=len(samples),
        silhouette=fit.silhouette,
        cluster_sizes=[int(n) for n in np.bincount(fit.labels, minlength=k)],
        centers=[
            {f: round(float(v), 4) + 0.0 for f, v in zip(FEATURES, row, strict=True)}
            for row in centers(fit.pipeline)
        ],
        k_scores=scores,
        k_reason=reason,
        min_cluster_size=spec.min_cluster_size,
        random_state=spec.random_state,
        sklearn_version=sklearn.__version__,
    )
    return TrainedModel(fit.pipeline, metadata, samples, fit.labels)
