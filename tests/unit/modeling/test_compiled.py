"""The compiled model places every customer exactly where `Pipeline.predict` does."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.pipeline import Pipeline

from services.segmenter.modeling.compiled import CompiledModel
from services.segmenter.modeling.feature_vector import FEATURES
from services.segmenter.modeling.synthetic import population
from services.segmenter.modeling.training import TrainingSpec, feature_matrix, train

SAMPLES = feature_matrix(f for _, f in population(40, seed=5))
PIPELINES = {
    algorithm: train(TrainingSpec("m", 3, algorithm), SAMPLES).pipeline
    for algorithm in ("kmeans", "minibatch", "gmm")
}


@pytest.mark.parametrize("algorithm", sorted(PIPELINES))
def test_training_customers_land_where_predict_puts_them(algorithm: str) -> None:
    pipeline = PIPELINES[algorithm]
    compiled = CompiledModel(pipeline)
    assert [compiled.cluster_of(row) for row in SAMPLES.tolist()] == pipeline.predict(SAMPLES).tolist()


def agree(pipeline: Pipeline, vector: list[float]) -> bool:
    return CompiledModel(pipeline).cluster_of(vector) == int(pipeline.predict(np.asarray([vector]))[0])


vectors = st.lists(
    st.floats(min_value=0, max_value=5000, allow_nan=False), min_size=len(FEATURES), max_size=len(FEATURES)
)


@settings(max_examples=60, deadline=None)
@given(vectors, st.sampled_from(sorted(PIPELINES)))
def test_any_customer_lands_where_predict_puts_them(vector: list[float], algorithm: str) -> None:
    assert agree(PIPELINES[algorithm], vector)
