"""A fitted pipeline reduced to its arrays, so assigning one customer costs microseconds.

`Pipeline.predict` validates its input and allocates on every call (about 0.2 ms for one row);
online assignment runs on every event, so the few numbers that decide a cluster are pulled out
once. The unit tests pin that `cluster_of` equals `Pipeline.predict`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from sklearn.mixture import GaussianMixture
from sklearn.pipeline import Pipeline


class CompiledModel:
    """Nearest centre (k-means) or most probable component (Gaussian mixture), in scaled space."""

    def __init__(self, pipeline: Pipeline) -> None:
        scaler, model = pipeline["scale"], pipeline["cluster"]
        self._inverse_scale = [1.0 / s for s in scaler.scale_]
        self._offset = [m / s for m, s in zip(scaler.mean_, scaler.scale_, strict=True)]
        self._mixture = isinstance(model, GaussianMixture)
        if self._mixture:
            self._means = np.asarray(model.means_)
            self._precision_cholesky = np.asarray(model.precisions_cholesky_)
            self._bias = _mixture_bias(model)
        else:
            self._centres = [list(map(float, centre)) for centre in model.cluster_centers_]

    def cluster_of(self, vector: Sequence[float]) -> int:
        scaled = [v * a - b for v, a, b in zip(vector, self._inverse_scale, self._offset, strict=True)]
        return self._most_probable(scaled) if self._mixture else self._nearest(scaled)

    def _nearest(self, scaled: list[float]) -> int:
        best, best_distance = 0, math.inf
        for index, centre in enumerate(self._centres):
            distance = sum((p - q) * (p - q) for p, q in zip(scaled, centre, strict=True))
            if distance < best_distance:
                best, best_distance = index, distance
        return best

    def _most_probable(self, scaled: list[float]) -> int:
        # log N(x | mean_k, cov_k) + log weight_k, without the constant every component shares.
        y = np.einsum("kd,kde->ke", np.asarray(scaled) - self._means, self._precision_cholesky)
        return int(np.argmax(self._bias - 0.5 * np.einsum("ke,ke->k", y, y)))


def _mixture_bias(model: GaussianMixture) -> np.ndarray:
    if model.covariance_type != "full":
        raise ValueError(f"covariance_type {model.covariance_type!r} is not compiled; training uses 'full'")
    log_det = np.log(np.diagonal(model.precisions_cholesky_, axis1=1, axis2=2)).sum(axis=1)
    return log_det + np.log(model.weights_)
