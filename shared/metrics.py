"""Prometheus metrics every service shares; service-specific ones live beside their service.

Labels are bounded: topics, partitions, routes and reasons, never a customer id.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

HTTP_REQUEST_SECONDS = Histogram(
    "segwarden_http_request_duration_seconds",
    "HTTP request latency by route template and status code.",
    ["method", "route", "status"],
    buckets=LATENCY_BUCKETS,
)
MESSAGES_CONSUMED = Counter("segwarden_messages_consumed_total", "Records read from a topic.", ["topic"])
MESSAGES_PUBLISHED = Counter("segwarden_messages_published_total", "Records published to a topic.", ["topic"])
DEAD_LETTERS = Counter(
    "segwarden_dead_letters_total",
    "Inputs that failed to parse or validate and went to the topic's dead-letter topic.",
    ["topic"],
)
CONSUMER_LAG = Gauge(
    "segwarden_consumer_lag_messages",
    "Records between a consumer's position and the partition end; clamped at 0 because the "
    "embedded broker under-reports end offsets (docs/broker.md).",
    ["group", "topic", "partition"],
)
DEPENDENCY_UP = Gauge(
    "segwarden_dependency_up",
    "1 when a dependency (kafka, redis, database) answered the last readiness check, else 0.",
    ["dependency"],
)
TASK_FAILURES = Counter(
    "segwarden_task_failures_total", "Crashes of a supervised background task, by task.", ["task"]
)
TASK_RUNNING = Gauge(
    "segwarden_task_running", "1 while a supervised background task runs, 0 while it backs off.", ["task"]
)
STEP_RETRIES = Counter(
    "segwarden_step_retries_total", "Transient failures of a retried step (start-up or per record).", ["step"]
)
EVENT_LOOP_LAG = Histogram(
    "segwarden_event_loop_lag_seconds",
    "How late a timer of the service's event loop fired: the longest stretch another task ran "
    "without an await, which every other task (an eviction's each step) waited for.",
    buckets=LATENCY_BUCKETS,
)
