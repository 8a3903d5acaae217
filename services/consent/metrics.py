"""Prometheus metrics of the consent service (labels bounded by the catalog; never a customer id)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

CHANGES = Counter(
    "segwarden_consent_changes_total",
    "Recorded consent choices by purpose, status and reason (published or not).",
    ["purpose", "status", "reason", "published"],
)
OUTBOX_PENDING = Gauge("segwarden_consent_outbox_pending", "Outbox rows not yet acknowledged by the broker.")
OUTBOX_OLDEST_AGE = Gauge(
    "segwarden_consent_outbox_oldest_age_seconds",
    "Age of the oldest outbox row not yet published (0 if none).",
)
PUBLISH_ERRORS = Counter(
    "segwarden_consent_publish_errors_total", "Failed attempts of the outbox relay to publish a batch."
)
PUBLISH_WAIT_TIMEOUTS = Counter(
    "segwarden_consent_publish_wait_timeouts_total",
    "Requests answered before their change was published (CONSENT_PUBLISH_WAIT_S passed; the outbox"
    " publishes it later).",
)
PUBLISH_WAIT_SECONDS = Histogram(
    "segwarden_consent_publish_wait_seconds",
    "From a request's commit to its change being on the broker, as the request waited for it.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
STATE_REPUBLISHED = Counter(
    "segwarden_consent_state_republished_total",
    "consent.state snapshots republished from the store (at start and after the broker came back).",
)
EXPIRED = Counter("segwarden_consent_expired_total", "Grants turned into denials by the expiry job.")
ERASURES = Counter("segwarden_consent_erasures_total", "Erasure requests carried out.")
HISTORY_RETIRED = Counter(
    "segwarden_consent_history_retired_total",
    "Superseded history rows pseudonymized by the retention job, by purpose.",
    ["purpose"],
)
PREFERENCES_STATED = Counter(
    "segwarden_consent_preferences_stated_total",
    "Zero-party preferences stated or removed on the preference center, by catalog key and action.",
    ["key", "action"],
)
DATA_USE_ANSWERS = Counter(
    "segwarden_consent_data_use_answers_total",
    "Answers to the preference center's data-use question, by whether they were counted (once each).",
    ["counted"],
)
