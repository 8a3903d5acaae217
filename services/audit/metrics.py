"""Prometheus metrics of the audit service (labels bounded: kinds and topics, never a subject)."""

from __future__ import annotations

import time

from prometheus_client import Counter, Gauge

RECORDS_APPENDED = Counter(
    "segwarden_audit_records_appended_total", "Records appended to the ledger, by kind.", ["kind"]
)
DUPLICATES_SKIPPED = Counter(
    "segwarden_audit_duplicates_skipped_total",
    "Source records not appended because the ledger already holds their event.",
)
LEDGER_LENGTH = Gauge("segwarden_audit_ledger_length", "Records in the ledger.")
LAST_CHECKPOINT_AGE = Gauge(
    "segwarden_audit_last_checkpoint_age_seconds",
    "Seconds since this process last signed a checkpoint (0 before the first).",
)
VERIFY_RUNS = Counter("segwarden_audit_verify_runs_total", "Ledger verifications run.")
VERIFY_FAILURES = Counter(
    "segwarden_audit_verify_failures_total", "Ledger verifications that found a bad record."
)
_last_checkpoint = [0.0]


def checkpoint_signed() -> None:
    _last_checkpoint[0] = time.monotonic()


LAST_CHECKPOINT_AGE.set_function(
    lambda: time.monotonic() - _last_checkpoint[0] if _last_checkpoint[0] else 0.0
)
HEAVY_REFUSED = Counter(
    "segwarden_audit_heavy_refused_total",
    "Proof and verification requests refused with 503 because AUDIT_HEAVY_REQUESTS were running.",
)
