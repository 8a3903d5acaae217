"""The topic registry: every topic's name (with `TOPIC_PREFIX`), partitions, policies, retention, schema."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel

from shared import events

HOUR_MS = 3_600_000

# Which retention setting bounds a topic (contract: Topics, retention): `input` for records
# consumed at once, `change` for what downstream consumers catch up on, `erasure` for the
# list of erased people, `audit` for the pseudonymized ledger; compacted topics keep the last
# value per key and are bounded by the compaction lag instead.
RetentionClass = Literal["input", "change", "erasure", "audit", "compacted"]


@dataclass(frozen=True)
class Retention:
    """How long each class of topic keeps a record, in ms (Apache Kafka only: Tansu never expires)."""

    input_ms: int = 72 * HOUR_MS
    change_ms: int = 7 * 24 * HOUR_MS
    erasure_ms: int = 72 * HOUR_MS
    dead_letter_ms: int = 72 * HOUR_MS
    audit_ms: int = 730 * 24 * HOUR_MS
    compaction_lag_ms: int = 24 * HOUR_MS

    def configs(self, retention: RetentionClass) -> dict[str, str]:
        if retention == "compacted":
            # Time never deletes; a superseded value is compacted away within the lag, and a
            # tombstone (it still names its key) is dropped after it.
            lag = str(self.compaction_lag_ms)
            return {
                "cleanup.policy": "compact",
                "retention.ms": "-1",
                "max.compaction.lag.ms": lag,
                "delete.retention.ms": lag,
            }
        ms = {"input": self.input_ms, "change": self.change_ms, "erasure": self.erasure_ms}.get(
            retention, self.audit_ms
        )
        return {"cleanup.policy": "delete", "retention.ms": str(ms)}

    def erasure_marker_ms(self) -> int:
        """How long the segmenter keeps an erasure marker after its erasure: until no input topic
        can still deliver a record from before it (the longest retention among customer.events,
        consent.changes and erasure.requests, and twice the compaction lag of consent.state, whose
        superseded values and the tombstone may each linger that long)."""
        return max(self.input_ms, self.change_ms, self.erasure_ms, 2 * self.compaction_lag_ms)

    def dead_letter_configs(self) -> dict[str, str]:
        return {"cleanup.policy": "delete", "retention.ms": str(self.dead_letter_ms)}


@dataclass(frozen=True)
class TopicSpec:
    """One topic of the contract, before the prefix is applied."""

    base: str
    schema: type[BaseModel]
    key: str | None
    description: str
    compacted: bool = False
    customer_keyed: bool = True
    retention: RetentionClass = "input"


CUSTOMER_EVENTS = TopicSpec(
    "customer.events",
    events.CustomerEvent,
    "customer_id",
    "What customers did, from upstream apps, and the preferences they state on the preference"
    " center (`profile_update`, source `preference-center`, attributes `pref.<key>`; null removes)."
    " `purchase` and `profile_update` feed features.",
)
CONSENT_REQUESTS = TopicSpec(
    "consent.requests",
    events.ConsentRequested,
    "customer_id",
    "Consent choices sent over Kafka; validated and recorded by the consent service.",
)
CONSENT_CHANGES = TopicSpec(
    "consent.changes",
    events.ConsentChanged,
    "customer_id",
    "One record per recorded change of effective consent, from the consent service.",
    retention="change",
)
CONSENT_STATE = TopicSpec(
    "consent.state",
    events.ConsentStateSnapshot,
    "customer_id",
    "Latest effective consent of every purpose per customer; a tombstone after erasure.",
    compacted=True,
    retention="compacted",
)
SEGMENT_DEFINITIONS = TopicSpec(
    "segment.definitions",
    events.SegmentDefinition,
    "segment_id",
    "Segment definitions keyed by segment id; a tombstone when a segment is deleted.",
    compacted=True,
    customer_keyed=False,
    retention="compacted",
)
SEGMENT_MEMBERSHIP = TopicSpec(
    "segment.membership",
    events.MembershipChanged,
    "customer_id",
    "Who joined and who left which segment, and why; what campaign tools subscribe to.",
    retention="change",
)
SEGMENT_MEMBERSHIP_STATE = TopicSpec(
    "segment.membership.state",
    events.MembershipState,
    "segment_id|customer_id",
    "The announced membership: the last `joined` per segment and customer, a tombstone after its "
    "`left`. Written to the customer's partition (murmur2 of `customer_id`), like every "
    "customer-keyed topic.",
    compacted=True,
    retention="compacted",
)
ERASURE_REQUESTS = TopicSpec(
    "erasure.requests",
    events.ErasureRequested,
    "customer_id",
    "Erasure requests from the consent service; every service forgets the customer.",
    retention="erasure",
)
MODEL_TRAININGS = TopicSpec(
    "model.trainings",
    events.ModelTrained,
    "model_id",
    "One record per model `segwarden model train` stored (counts, no customer); the audit service "
    "records each in the ledger.",
    customer_keyed=False,
    retention="change",
)
RETENTION_RUNS = TopicSpec(
    "retention.runs",
    events.RetentionRun,
    "service",
    "One record per run of a retention job (consent history, segmenter features and memberships): "
    "counts, no customer; the audit service records each in the ledger.",
    customer_keyed=False,
    retention="change",
)
DELIVERY_OUTCOMES = TopicSpec(
    "delivery.outcomes",
    events.DeliveryOutcome,
    "subject",
    "How each webhook to a third-party destination ended (delivered, dead, withheld), under the"
    " customer's pseudonym; from the delivery service, recorded in the ledger by the audit service.",
    customer_keyed=False,
    retention="change",
)
DELIVERY_DESTINATIONS = TopicSpec(
    "delivery.destinations",
    events.DestinationChanged,
    "destination_id",
    "Each change to a third-party destination (created, changed, paused by 410 Gone, resumed,"
    " deleted), ids and counts only; from the delivery service, recorded in the ledger by the audit"
    " service.",
    customer_keyed=False,
    retention="change",
)
AUDIT_LOG = TopicSpec(
    "audit.log",
    events.AuditRecord,
    None,
    "The audit ledger in ledger order, pseudonymized, hash-chained.",
    customer_keyed=False,
    retention="audit",
)

ALL: tuple[TopicSpec, ...] = (
    CUSTOMER_EVENTS,
    CONSENT_REQUESTS,
    CONSENT_CHANGES,
    CONSENT_STATE,
    SEGMENT_DEFINITIONS,
    SEGMENT_MEMBERSHIP,
    SEGMENT_MEMBERSHIP_STATE,
    ERASURE_REQUESTS,
    MODEL_TRAININGS,
    RETENTION_RUNS,
    DELIVERY_OUTCOMES,
    DELIVERY_DESTINATIONS,
    AUDIT_LOG,
)
# Inputs that may carry records which fail to parse get a dead-letter topic each.
WITH_DEAD_LETTERS: tuple[TopicSpec, ...] = (
    CUSTOMER_EVENTS,
    CONSENT_REQUESTS,
    CONSENT_CHANGES,
    CONSENT_STATE,
    SEGMENT_DEFINITIONS,
    SEGMENT_MEMBERSHIP,
    ERASURE_REQUESTS,
    MODEL_TRAININGS,
    RETENTION_RUNS,
    DELIVERY_OUTCOMES,
    DELIVERY_DESTINATIONS,
)
DLQ_SUFFIX = ".dlq"


@dataclass(frozen=True)
class TopicPlan:
    """A concrete topic to create: full name, partitions and configs."""

    name: str
    partitions: int
    configs: dict[str, str]


class TopicNames:
    """Resolves contract topic names for one stack (prefix and partition count)."""

    def __init__(self, prefix: str = "", partitions: int = 6, retention: Retention | None = None) -> None:
        self.prefix = prefix
        self.partitions = partitions
        self.retention = retention or Retention()

    def name(self, spec: TopicSpec) -> str:
        return f"{self.prefix}{spec.base}"

    def dlq(self, spec: TopicSpec) -> str:
        return f"{self.prefix}{spec.base}{DLQ_SUFFIX}"

    def plan(self) -> list[TopicPlan]:
        """Every topic of the stack with its final partition count (the broker cannot add any)."""
        plans = []
        for spec in ALL:
            # Customer-keyed topics are co-partitioned; audit.log is one partition so its
            # order is the ledger's order; definitions are few and read whole by every worker.
            partitions = self.partitions if spec.customer_keyed else 1
            configs = self.retention.configs("compacted" if spec.compacted else spec.retention)
            plans.append(TopicPlan(self.name(spec), partitions, configs))
        for spec in WITH_DEAD_LETTERS:
            plans.append(TopicPlan(self.dlq(spec), 1, self.retention.dead_letter_configs()))
        return plans
