"""Choosing K: the silhouette of each fit, and the best K whose every cluster is big enough."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.metrics import silhouette_score
from sklearn.pipeline import Pipeline

AUTO_RANGE = range(2, 9)
# Silhouette is quadratic in the rows; a fixed-seed sample keeps `auto` fast on big populations.
SILHOUETTE_SAMPLE = 3000


class TrainingError(ValueError):
    """Training cannot give a usable, privacy-safe model from these customers."""


@dataclass(frozen=True)
class Fit:
    pipeline: Pipeline
    labels: np.ndarray
    silhouette: float | None


def choose_k(fits: dict[int, Fit], min_size: int) -> tuple[int, dict[str, float | None], str]:
    """The K with the highest silhouette among fits whose every cluster holds `min_size` customers."""
    allowed = {k: f.silhouette for k, f in fits.items() if _smallest(f.labels, k) >= min_size}
    scores = {str(k): allowed.get(k) for k in fits}
    scored = {k: s for k, s in allowed.items() if s is not None}
    if not scored:
        raise TrainingError(
            f"no K in {min(fits)}..{max(fits)} gives clusters of at least {min_size} customers"
        )
    best = max(scored, key=lambda k: (scored[k], -k))  # a tie goes to the simpler model
    refused = sorted(k for k in fits if k not in allowed)
    reason = f"K={best} has the highest silhouette ({scored[best]:.3f}) of K={min(fits)}..{max(fits)}"
    if refused:
        reason += f"; K={refused} left out: a cluster under {min_size} customers"
    return best, scores, reason


def silhouette(pipeline: Pipeline, samples: np.ndarray, labels: np.ndarray, seed: int) -> float | None:
    if not 2 <= len(np.unique(labels)) < len(samples):
        return None  # undefined: everyone in one cluster, or one customer per cluster
    scaled = pipeline["scale"].transform(samples)
    size = min(len(samples), SILHOUETTE_SAMPLE)
    return float(silhouette_score(scaled, labels, sample_size=size, random_state=seed))


def _smallest(labels: np.ndarray, k: int) -> int:
    return int(np.bincount(labels, minlength=k).min())
