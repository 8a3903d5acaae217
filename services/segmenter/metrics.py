"""Prometheus metrics of the segmenter (shared ones are in shared/metrics.py). No customer ids in labels."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from shared.metrics import LATENCY_BUCKETS

EVENTS_PROCESSED = Counter(
    "segwarden_segmenter_events_processed_total",
    "Customer events by type family (purchase, profile_update, other) and outcome "
    "(applied, duplicate, erased: from before the customer's erasure, dead_letter).",
    ["type", "outcome"],
)
ERASED_INPUT_REFUSED = Counter(
    "segwarden_segmenter_erased_input_refused_total",
    "Inputs refused for being from before their customer's erasure (the erasure marker), by input "
    "(event, consent).",
    ["input"],
)
EVALUATION_SECONDS = Histogram(
    "segwarden_segmenter_evaluation_seconds",
    "Time to evaluate one customer's candidate segments (pure rule and consent checks).",
    buckets=(0.00001, 0.00005, 0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05),
)
MEMBERSHIP_CHANGES = Counter(
    "segwarden_segmenter_membership_changes_total",
    "Published membership changes by action and reason.",
    ["action", "reason"],
)
EVICTION_LATENCY = Histogram(
    "segwarden_segmenter_eviction_latency_seconds",
    "From a consent change's recorded_at to the publish of the `left` it caused.",
    buckets=LATENCY_BUCKETS,
)
SEGMENT_SIZE = Gauge("segwarden_segmenter_segment_size", "Live members per segment.", ["segment"])
COMPLIANCE_VIOLATIONS = Counter(
    "segwarden_segmenter_compliance_violations_total",
    "Memberships found by the compliance monitor without effective consent (evicted); must stay 0.",
)
COMPLIANCE_SCANS = Counter(
    "segwarden_segmenter_compliance_scans_total", "Completed compliance scans of live membership."
)
OWNED_PARTITIONS = Gauge(
    "segwarden_segmenter_owned_partitions", "Partitions of the customer topics this worker owns now."
)
SWEEPS = Counter("segwarden_segmenter_sweeps_total", "Completed sweeps for time-based features and expiry.")
COMMIT_CONFLICTS = Counter(
    "segwarden_segmenter_commit_conflicts_total",
    "Membership commits retried because the customer changed between read and commit.",
)
REDIS_REBUILDS = Counter(
    "segwarden_segmenter_redis_rebuilds_total",
    "Rebuilds of the owned partitions' Redis state from the topics, by cause (first_start, lost: "
    "the generation marker vanished, replaced: another marker, takeover: a partition whose "
    "rebuild its last owner never finished).",
    ["cause"],
)
REDIS_REBUILDING = Gauge(
    "segwarden_segmenter_redis_rebuilding",
    "1 while this worker rebuilds Redis state (no `joined` is published for those partitions), else 0.",
)
REBUILD_EVENTS_REPLAYED = Counter(
    "segwarden_segmenter_rebuild_events_replayed_total",
    "customer.events records replayed into Redis by a rebuild.",
)
ADMISSION_WAIT = Histogram(
    "segwarden_segmenter_admission_wait_seconds",
    "How long an admission of joins that need consent waited at the consent barrier (until every "
    "consent change of its customers' partitions written before it was handled).",
    buckets=LATENCY_BUCKETS,
)
ADMISSIONS_DEFERRED = Counter(
    "segwarden_segmenter_admissions_deferred_total",
    "Admissions given up at the consent barrier, their joins left in the outbox for the sweep's "
    "relay, by reason: timeout (no consent change handled for 20 s: a stall or a long backlog) or "
    "moved (a customer's consent partition is no longer this worker's).",
    ["reason"],
)
# Both series exist from the start, at 0, so an alert's `increase` sees the first deferral.
ADMISSIONS_DEFERRED.labels("timeout")
ADMISSIONS_DEFERRED.labels("moved")
JOINS_WITHHELD = Counter(
    "segwarden_segmenter_joins_withheld_total",
    "Joins not published because their partition was being rebuilt (announced after the rebuild).",
)
RETENTION_PURGED = Counter(
    "segwarden_segmenter_retention_purged_total",
    "Customers let go, inactive past the retention of the purposes they serve: their features "
    "purged, or, known only from consent, their memberships ended and their activity forgotten.",
)
REEVALUATION_PENDING_SEGMENTS = Gauge(
    "segwarden_segmenter_reevaluation_pending_segments",
    "Segments defined, changed or deleted whose re-evaluation of this worker's customers has not "
    "finished (0 once every definition holds for every owned customer).",
)
REEVALUATION_PENDING_CUSTOMERS = Gauge(
    "segwarden_segmenter_reevaluation_pending_customers",
    "Customers the running re-evaluation pass has still to visit (0 when no pass runs).",
)
REEVALUATED_CUSTOMERS = Counter(
    "segwarden_segmenter_reevaluated_customers_total",
    "Customers visited by re-evaluation passes after definition or model changes.",
)
PASS_PAUSED = Counter(
    "segwarden_segmenter_pass_paused_seconds_total",
    "Seconds passes over every owned customer (pass: sweep, compliance, reevaluation, reconcile) "
    "waited between chunks for live input (an event backlog, consent changes being handled).",
    ["pass"],
)
PASS_SECONDS = Gauge(
    "segwarden_segmenter_pass_seconds",
    "How long the last completed pass of each kind took, pauses included.",
    ["pass"],
)
PASS_OVERRUNS = Counter(
    "segwarden_segmenter_pass_overruns_total",
    "Sweeps and compliance scans that took longer than their interval, pauses included.",
    ["pass"],
)
