"""A fitted pipeline reduced to a few weight vectors, so assigning one customer costs microseconds.

`Pipeline.predict` validates its input and allocates arrays on every call (about 1 ms for one
row here); online assignment runs on every event, so the scaler is folded into per-cluster
weights once and a cluster is a handful of dot products over the raw feature vector. The unit
tests pin that `cluster_of` equals `Pipeline.predict`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from operator import mul
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    # Only for types: a pipeline reaches this module unpickled, so scikit-learn is loaded by then,
    # and a segmenter with no model never pays for importing it (over half of its start-up).
    from sklearn.mixture import GaussianMixture
    from sklearn.pipeline import Pipeline

Row = tuple[float, ...]


class CompiledModel:
    """Nearest centre (k-means) or most probable component (Gaussian mixture), scaling folded in."""

    def __init__(self, pipeline: Pipeline) -> None:
        scaler, model = pipeline["scale"], pipeline["cluster"]
        # scaled = x * a - b, with a = 1 / scale and b = mean / scale
        a = 1.0 / np.asarray(scaler.scale_)
        b = np.asarray(scaler.mean_) * a
        from sklearn.mixture import GaussianMixture

        if isinstance(model, GaussianMixture):
            self.cluster_of = _most_probable_component(model, a, b)
        else:
            self.cluster_of = _nearest_centre(np.asarray(model.cluster_centers_), a, b)

    cluster_of: Callable[[Sequence[float]], int]
    """The cluster of a raw feature vector (`FEATURES` order); equal scores go to the lowest index."""


def _nearest_centre(centres: np.ndarray, a: np.ndarray, b: np.ndarray) -> Callable[[Sequence[float]], int]:
    # |x*a - (b + c)|^2 = |x*a|^2 - 2 x.(a*(b + c)) + |b + c|^2, and |x*a|^2 is the same for every
    # centre: the nearest centre has the highest 2 x.(a*(b + c)) - |b + c|^2, one dot product.
    weights: list[Row] = [tuple(float(v) for v in 2 * a * (b + c)) for c in centres]
    constants = [float(((b + c) ** 2).sum()) for c in centres]

    def nearest(x: Sequence[float]) -> int:
        scores = [sum(map(mul, x, w)) - k for w, k in zip(weights, constants, strict=True)]
        return scores.index(max(scores))

    return nearest


def _most_probable_component(
    model: GaussianMixture, a: np.ndarray, b: np.ndarray
) -> Callable[[Sequence[float]], int]:
    if model.covariance_type != "full":
        raise ValueError(f"covariance_type {model.covariance_type!r} is not compiled; training uses 'full'")
    # y_k = (x*a - b - mean_k) @ P_k = x @ (a[:, None] * P_k) - (b + mean_k) @ P_k. Here numpy wins:
    # the K x D x D products are too many for Python-level dot products (measured: 4x slower).
    precision = np.asarray(model.precisions_cholesky_)
    folded = a[None, :, None] * precision
    offsets = np.einsum("kd,kde->ke", b + np.asarray(model.means_), precision)
    log_det = np.log(np.diagonal(precision, axis1=1, axis2=2)).sum(axis=1)
    bias = log_det + np.log(model.weights_)

    def most_probable(x: Sequence[float]) -> int:
        # log N(x | mean_k, cov_k) + log weight_k, without the constant all components share
        y = np.einsum("d,kde->ke", np.asarray(x, dtype=float), folded) - offsets
        return int(np.argmax(bias - 0.5 * np.einsum("ke,ke->k", y, y)))

    return most_probable
