"""Prometheus metrics of model loading and online assignment in the segmenter (labels: model ids only)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

MODELS_LOADED = Gauge("segwarden_segmenter_models_loaded", "Verified models the segmenter assigns with.")
MODELS_REFUSED = Counter(
    "segwarden_segmenter_models_refused_total",
    "Model files refused at load because their signature, checksum or contents did not verify.",
)
ASSIGNMENTS = Counter(
    "segwarden_segmenter_model_assignments_total",
    "Customers assigned a cluster online, by model (withheld ones, without consent, are not counted).",
    ["model"],
)
