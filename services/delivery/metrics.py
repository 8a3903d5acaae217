"""Prometheus metrics of the delivery service (labels: destination ids, which operators create)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

DELIVERED = Counter(
    "segwarden_delivery_delivered_total", "Webhooks a destination acknowledged (2xx).", ["destination"]
)
RETRIED = Counter(
    "segwarden_delivery_retried_total", "Failed webhook attempts that will be tried again.", ["destination"]
)
FAILED = Counter(
    "segwarden_delivery_failed_total",
    "Webhooks given up after the last attempt (kept as dead-letter records).",
    ["destination"],
)
PAUSED = Counter(
    "segwarden_delivery_paused_total",
    "Times a destination was paused because its endpoint answered 410 Gone.",
    ["destination"],
)
CIRCUIT_STATE = Gauge(
    "segwarden_delivery_circuit_state",
    "State of the circuit breaker of the destination's endpoint: 0 closed, 1 half-open, 2 open.",
    ["destination"],
)
PAUSED_NOW = Gauge(
    "segwarden_delivery_destination_paused",
    "1 while the destination is paused (its endpoint answered 410 Gone; a PUT resumes it), else 0.",
    ["destination"],
)
SUSPENDED_NOW = Gauge(
    "segwarden_delivery_destination_suspended",
    "1 while the destination has no valid data-processing agreement (it receives nothing), else 0.",
    ["destination"],
)
PRUNED = Counter(
    "segwarden_delivery_pruned_total",
    "Rows the retention job deleted: ended webhooks and relayed changes to destinations.",
    ["kind"],
)
LATENCY = Histogram(
    "segwarden_delivery_latency_seconds",
    "From the change (membership, consent or erasure) to the destination's acknowledgement.",
    ["destination"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 3600),
)
