"""A small trained model on synthetic customers, shared by the modeling unit tests."""

from __future__ import annotations

import pytest

from services.segmenter.modeling.synthetic import population
from services.segmenter.modeling.training import TrainedModel, TrainingSpec, feature_matrix, train


@pytest.fixture(scope="session")
def trained() -> TrainedModel:
    people = population(40, seed=3)
    return train(TrainingSpec("rfm-3", 3), feature_matrix(f for _, f in people))
