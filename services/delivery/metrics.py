"""Prometheus metrics of the delivery service (labels: destination ids, which operators create)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

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
