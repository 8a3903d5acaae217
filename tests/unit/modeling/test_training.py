"""Training: the pipeline separates known groups, auto-K says why, tiny clusters are refused."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from services.segmenter.modeling.feature_vector import FEATURES
from services.segmenter.modeling.metadata import ModelIdError
from services.segmenter.modeling.selection import Fit, TrainingError, choose_k
from services.segmenter.modeling.synthetic import GROUPS, population
from services.segmenter.modeling.training import TrainingSpec, feature_matrix, train


@pytest.fixture(scope="module")
def known() -> tuple[np.ndarray, list[int]]:
    people = population(60, seed=11)
    return feature_matrix(f for _, f in people), [g for g, _ in people]


@pytest.mark.parametrize("algorithm", ["kmeans", "minibatch", "gmm"])
def test_each_algorithm_separates_the_known_groups(
    known: tuple[np.ndarray, list[int]], algorithm: str
) -> None:
    samples, groups = known
    model = train(TrainingSpec("rfm", 3, algorithm), samples)
    assert adjusted_rand_score(groups, model.labels) > 0.95
    assert list(model.pipeline.named_steps) == ["scale", "cluster"]
    assert model.metadata.n_training == len(samples) == sum(model.metadata.cluster_sizes)
    assert model.metadata.algorithm == algorithm and model.metadata.features == list(FEATURES)


def test_centers_are_in_original_units(known: tuple[np.ndarray, list[int]]) -> None:
    samples, _ = known
    centers = train(TrainingSpec("rfm", 3), samples).metadata.centers
    frequencies = sorted(center["frequency"] for center in centers)
    assert frequencies[0] == pytest.approx(GROUPS[2].purchases, abs=0.5)
    assert frequencies[-1] == pytest.approx(GROUPS[0].purchases, abs=2)
    assert max(center["recency_days"] for center in centers) == pytest.approx(365.0)


def test_auto_chooses_the_number_of_groups_and_records_every_score(
    known: tuple[np.ndarray, list[int]],
) -> None:
    samples, _ = known
    steps: list[str] = []
    metadata = train(TrainingSpec("auto", None), samples, steps.append).metadata
    assert metadata.clusters == len(GROUPS)
    assert metadata.k_scores is not None and set(metadata.k_scores) == {str(k) for k in range(2, 9)}
    assert metadata.silhouette == metadata.k_scores["3"] == max(s for s in metadata.k_scores.values() if s)
    assert metadata.k_reason is not None and metadata.k_reason.startswith("K=3 has the highest silhouette")
    assert steps == [f"fitting K={k}" for k in range(2, 9)]


def test_choose_k_leaves_out_a_k_with_a_cluster_too_small() -> None:
    fits = {
        2: Fit(None, np.array([0] * 20 + [1] * 20), 0.5),
        3: Fit(None, np.array([0] * 20 + [1] * 19 + [2]), 0.9),
    }
    best, scores, reason = choose_k(fits, min_size=10)
    assert best == 2 and scores == {"2": 0.5, "3": None}
    assert "K=[3] left out" in reason


def test_a_fixed_k_with_a_tiny_cluster_is_refused(known: tuple[np.ndarray, list[int]]) -> None:
    samples, _ = known
    outlier = np.vstack([samples, [[1.0, 1.0, 500.0, 90000.0, 180.0, 3000.0, 0.9]]])
    with pytest.raises(TrainingError, match="would describe individuals"):
        train(TrainingSpec("rfm", 4, min_cluster_size=10), outlier)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (TrainingSpec("rfm", 3, "dbscan"), "algorithm 'dbscan'"),
        (TrainingSpec("rfm", 1), "at least 2"),
        (TrainingSpec("rfm", 8, min_cluster_size=30), "need at least 240"),
    ],
)
def test_bad_specs_are_refused_with_the_reason(
    known: tuple[np.ndarray, list[int]], spec: TrainingSpec, message: str
) -> None:
    with pytest.raises(TrainingError, match=message):
        train(spec, known[0])


@pytest.mark.parametrize("model_id", ["../etc", ".hidden", "a/b", "", "x" * 65])
def test_a_model_id_that_cannot_name_a_file_is_refused(model_id: str) -> None:
    with pytest.raises(ModelIdError):
        train(TrainingSpec(model_id, 3), np.zeros((100, len(FEATURES))))


def test_identical_customers_cannot_make_clusters() -> None:
    with pytest.raises(TrainingError, match="only 1 distinct feature vectors"):
        train(TrainingSpec("flat", None), np.ones((100, len(FEATURES))))


@pytest.mark.parametrize("algorithm", ["kmeans", "minibatch", "gmm"])
def test_the_fitted_pipeline_keeps_nothing_per_training_row(
    known: tuple[np.ndarray, list[int]], algorithm: str
) -> None:
    """What is pickled under DATA_DIR is aggregates only: an erased customer leaves no row in it."""
    samples, _ = known
    model = train(TrainingSpec("rfm", 3, algorithm), samples)
    per_row = [
        f"{name}.{attribute}"
        for name, step in model.pipeline.steps
        for attribute, value in vars(step).items()
        if isinstance(value, np.ndarray) and len(samples) in value.shape
    ]
    assert per_row == []
    assert np.array_equal(model.pipeline.predict(samples), model.labels)
