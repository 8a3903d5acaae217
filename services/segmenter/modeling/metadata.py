"""What training records about a model: served on `GET /v1/models`, signed with the model's bytes."""

from __future__ import annotations

import re
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

ALGORITHMS = ("kmeans", "minibatch", "gmm")
# A model id becomes a file name under DATA_DIR/models: no separators, no leading dot.
MODEL_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class ModelIdError(ValueError):
    """A model id that could not safely name a file."""


def check_model_id(model_id: str) -> str:
    if not MODEL_ID.fullmatch(model_id):
        raise ModelIdError(
            f"model id {model_id!r}: 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    return model_id


class ModelMetadata(BaseModel):
    """A trained model as a marketer and the segmenter see it; nothing here names a customer."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(pattern=MODEL_ID.pattern)
    created_at: datetime
    algorithm: str
    clusters: int = Field(ge=2)
    features: list[str]
    purpose: str = "profiling"
    n_training: int = Field(ge=0)
    silhouette: float | None
    cluster_sizes: list[int]
    # One mapping feature -> value per cluster, in the features' own units (days, purchases, EUR).
    centers: list[dict[str, float]]
    # With `--clusters auto`: the silhouette of every K tried (None when K was refused), and why.
    k_scores: dict[str, float | None] | None = None
    k_reason: str | None = None
    min_cluster_size: int = 1
    random_state: int = 0
    sklearn_version: str
