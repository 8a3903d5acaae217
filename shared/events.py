"""The messages that cross Kafka topics: one frozen, strict pydantic model per record type.

Decode with `Model.model_validate_json(raw)`; a timestamp must be an RFC 3339 date-time with
a zone (`Timestamp`), which is what crosses a topic.
"""

from __future__ import annotations

import math
import os
import re
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

CUSTOMER_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,127}$"
PURPOSE_ID_PATTERN = r"^[a-z][a-z0-9_]{0,63}$"
SEGMENT_ID_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"

CustomerId = Annotated[str, StringConstraints(pattern=CUSTOMER_ID_PATTERN)]
PurposeId = Annotated[str, StringConstraints(pattern=PURPOSE_ID_PATTERN)]
SegmentId = Annotated[str, StringConstraints(pattern=SEGMENT_ID_PATTERN)]
EventId = Annotated[str, StringConstraints(min_length=1, max_length=128)]
_KEY_PATTERNS = {"customer": re.compile(CUSTOMER_ID_PATTERN), "segment": re.compile(SEGMENT_ID_PATTERN)}


def key_id(key: bytes | None, kind: Literal["customer", "segment"]) -> str | None:
    """The customer or segment id a record key holds, None when it holds none (missing, not
    UTF-8, or not an id). Tombstones carry nothing but their key, so it is checked like a field."""
    if key is None:
        return None
    try:
        text = key.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return text if _KEY_PATTERNS[kind].fullmatch(text) else None


# RFC 3339's date-time (section 5.6; a space for the T as its note allows). pydantic alone also
# takes seconds since the epoch as text ("1700000000") and a time without seconds ("...T10:00Z").
_RFC3339_DATE_TIME = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})")


def _rfc3339_text(value: object) -> object:
    """Text becomes a datetime here (strict mode takes no text past a before-validator)."""
    if not isinstance(value, str):
        return value
    if not _RFC3339_DATE_TIME.fullmatch(value):
        raise ValueError("must be an RFC 3339 date-time with a zone, such as 2026-12-01T10:00:00Z")
    return datetime.fromisoformat(value.upper())  # the pattern leaves only digits, signs, T and Z


Timestamp = Annotated[AwareDatetime, BeforeValidator(_rfc3339_text)]
EventType = Annotated[str, StringConstraints(pattern=r"^[a-z0-9_.]{1,64}$")]
ShortText = Annotated[str, StringConstraints(max_length=256)]
ConsentSequence = Annotated[int, Field(ge=1, le=2**53)]

# Bounds of `CustomerEvent.attributes` (contract: Limits): what one event may carry.
MAX_EVENT_ATTRIBUTES = 64  # top-level names
MAX_ATTRIBUTE_NAME = 64  # characters of a name, at any level
MAX_ATTRIBUTE_TEXT = 1024  # characters of a string value, at any level
MAX_ATTRIBUTE_VALUES = 256  # values in all, nested lists and objects included
MAX_ATTRIBUTE_DEPTH = 4  # levels: `{"a": [[1]]}` puts the 1 at level 3
MAX_ATTRIBUTE_INT = 2**63 - 1  # integers fit a signed 64-bit value
MAX_DEAD_LETTER_ERROR = 1024  # characters of a dead letter's reason

ConsentStatus = Literal["granted", "denied"]
Jurisdiction = Literal["GDPR", "CCPA", "OTHER"]
ConsentReason = Literal["user", "gpc", "expired", "erasure"]
MembershipAction = Literal["joined", "left"]
MembershipReason = Literal[
    "rule_matched",
    "rule_unmatched",
    "consent_granted",
    "consent_withdrawn",
    "consent_expired",
    "erased",
    "segment_changed",
    "segment_deleted",
    # Added after the first release: the customer was inactive past the retention of the segment's
    # purposes (see docs/contract.md for what an older consumer does with it).
    "retention_expired",
]


# The `source` of what the preference center publishes: consent choices, and on customer.events
# the `profile_update` events of the preferences a customer states (attributes `pref.<key>`).
PREFERENCE_CENTER_SOURCE = "preference-center"


def new_event_id() -> str:
    return uuid.uuid4().hex


def new_event_ids(n: int) -> list[str]:
    """`n` ids like new_event_id's (random version-4 UUIDs, as hex) from one read of the system's
    randomness: a thousand uuid4() calls took longer than the rest of an opt-out's thousand messages."""
    raw = bytearray(os.urandom(16 * n))
    for i in range(0, 16 * n, 16):
        raw[i + 6] = raw[i + 6] & 0x0F | 0x40  # version 4
        raw[i + 8] = raw[i + 8] & 0x3F | 0x80  # the RFC 4122 variant
    return [raw[i : i + 16].hex() for i in range(0, 16 * n, 16)]


def utcnow() -> datetime:
    return datetime.now(UTC)


class Message(BaseModel):
    """Base of every topic record: immutable, unknown fields refused, no silent coercion."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    def to_bytes(self) -> bytes:
        return self.model_dump_json().encode()


class CustomerEvent(Message):
    """`customer.events`: something a customer did, published by an upstream app."""

    event_id: EventId
    customer_id: CustomerId
    type: EventType
    occurred_at: Timestamp
    source: ShortText
    attributes: dict[str, Any] = Field(default_factory=dict, max_length=MAX_EVENT_ATTRIBUTES)

    @field_validator("attributes")
    @classmethod
    def _check_attributes(cls, value: dict[str, Any]) -> dict[str, Any]:
        problem = attribute_problem(value)
        if problem:
            raise ValueError(problem)
        return value

    @model_validator(mode="after")
    def _check_purchase(self) -> CustomerEvent:
        if self.type == "purchase":
            amount = self.attributes.get("amount")
            if isinstance(amount, bool) or not isinstance(amount, int | float) or amount < 0:
                raise ValueError("attributes.amount: a purchase needs a number >= 0")
            if not isinstance(self.attributes.get("currency"), str):
                raise ValueError("attributes.currency: a purchase needs a currency code")
        return self


def attribute_problem(attributes: dict[str, Any]) -> str | None:
    """What breaks the attribute bounds, naming where (never the value); None when within them.

    Numbers must be finite: JSON decoding accepts `NaN`, `Infinity` and `1e999`, which no
    feature, comparison or store can use.
    """
    pending: list[tuple[str, str, Any, int]] = [(name, name, item, 1) for name, item in attributes.items()]
    seen = 0
    while pending:
        where, name, item, depth = pending.pop()
        seen += 1
        problem = _value_problem(name, item, depth)
        if problem:
            return f"{where[:100]}: {problem}"
        if isinstance(item, dict | list):
            if seen + len(pending) + len(item) > MAX_ATTRIBUTE_VALUES:
                return f"more than {MAX_ATTRIBUTE_VALUES} values in all"
            children = item.items() if isinstance(item, dict) else enumerate(item)
            pending += [
                (
                    f"{where}.{key}" if isinstance(item, dict) else f"{where}[{key}]",
                    str(key),
                    child,
                    depth + 1,
                )
                for key, child in children
            ]
    return None


def _value_problem(name: str, item: Any, depth: int) -> str | None:
    if len(name) > MAX_ATTRIBUTE_NAME:
        return f"names are at most {MAX_ATTRIBUTE_NAME} characters"
    if isinstance(item, float) and not math.isfinite(item):
        return "must be a finite number"
    if isinstance(item, int) and not isinstance(item, bool) and abs(item) > MAX_ATTRIBUTE_INT:
        return "integers must fit 64 bits"
    if isinstance(item, str) and len(item) > MAX_ATTRIBUTE_TEXT:
        return f"text is at most {MAX_ATTRIBUTE_TEXT} characters"
    if depth > MAX_ATTRIBUTE_DEPTH:
        return f"nested deeper than {MAX_ATTRIBUTE_DEPTH} levels"
    return None


class ConsentRequested(Message):
    """`consent.requests`: a consent choice sent over Kafka instead of the HTTP PUT."""

    request_id: EventId
    event_id: EventId | None = None
    customer_id: CustomerId
    purpose: PurposeId
    status: ConsentStatus
    source: ShortText
    jurisdiction: Jurisdiction
    policy_version: ShortText
    expires_at: Timestamp | None = None
    # Added: the version of the purpose's notice the customer saw, as in the consent PUT body
    # (1 to the catalog's current `notice_version`; a later one is dead-lettered).
    notice_version: Annotated[int, Field(ge=1)] | None = None


class ConsentChanged(Message):
    """`consent.changes`: one recorded change of a customer's consent to one purpose."""

    event_id: EventId
    customer_id: CustomerId
    purpose: PurposeId
    status: ConsentStatus
    previous_status: ConsentStatus | None
    reason: ConsentReason
    source: ShortText
    jurisdiction: Jurisdiction
    policy_version: ShortText
    recorded_at: Timestamp
    expires_at: Timestamp | None = None
    # Per customer, strictly increasing in commit order across all purposes: what orders
    # consent (recorded_at is for display). None on records written before it existed.
    sequence: ConsentSequence | None = None


class PurposeState(Message):
    """The effective consent of one customer to one purpose."""

    status: ConsentStatus
    effective: bool
    recorded_at: Timestamp | None = None
    source: ShortText | None = None
    expires_at: Timestamp | None = None
    jurisdiction: Jurisdiction | None = None
    policy_version: ShortText | None = None
    # The customer's consent sequence of the change that set this state (see ConsentChanged).
    sequence: ConsentSequence | None = None
    # Added: the version of the purpose's notice (purpose catalog) the choice was made under.
    notice_version: Annotated[int, Field(ge=1)] | None = None


class ConsentStateSnapshot(Message):
    """`consent.state` (compacted): the latest state of every purpose of one customer."""

    event_id: EventId
    customer_id: CustomerId
    purposes: dict[PurposeId, PurposeState]
    updated_at: Timestamp


class SegmentDefinition(Message):
    """`segment.definitions` (compacted, key `segment_id`): a rule- or model-based segment."""

    event_id: EventId
    segment_id: SegmentId
    name: ShortText
    rule: Annotated[str, StringConstraints(max_length=4096)] | None = None
    model: Annotated[str, StringConstraints(max_length=128)] | None = None
    cluster: Annotated[int, Field(ge=0)] | None = None
    required_purposes: tuple[PurposeId, ...] = ()
    description: Annotated[str, StringConstraints(max_length=2048)] = ""
    version: Annotated[int, Field(ge=1)] = 1
    updated_at: Timestamp

    @model_validator(mode="after")
    def _rule_or_model(self) -> SegmentDefinition:
        if (self.rule is None) == (self.model is None):
            raise ValueError("a segment has exactly one of rule or model")
        if self.model is not None and self.cluster is None:
            raise ValueError("cluster: a model-based segment names its cluster")
        return self


# A deleted segment's tombstone has no value to carry its version: this record header does
# (decimal ASCII), so a reader can tell a tombstone older than the segment's re-creation from one
# that deletes it. Tombstones published before the header existed have none.
DEFINITION_VERSION_HEADER = "version"


def tombstone_version(headers: Iterable[tuple[str, bytes]]) -> int | None:
    """The deletion's version in a definition tombstone's headers: 0 when it has none, None when
    the header is not a positive decimal number (the record is refused)."""
    for name, value in headers:
        if name == DEFINITION_VERSION_HEADER:
            text = value.decode("ascii", errors="replace")
            return int(text) if text.isdecimal() and len(text) <= 18 and int(text) >= 1 else None
    return 0


class MembershipChanged(Message):
    """`segment.membership`: a customer joined or left a segment; what campaign tools read."""

    event_id: EventId
    segment_id: SegmentId
    customer_id: CustomerId
    action: MembershipAction
    reason: MembershipReason
    cause_event_id: EventId | None
    cause_at: Timestamp | None
    at: Timestamp


class MembershipState(Message):
    """`segment.membership.state` (compacted): the last `joined` announced for one segment and customer.

    Key `<segment_id>|<customer_id>`, on the customer's partition; a tombstone once the `left`
    was announced, so the live keys are the announced membership. The value is the `joined`
    MembershipChanged as it was published on `segment.membership`.
    """

    event_id: EventId
    segment_id: SegmentId
    customer_id: CustomerId
    action: Literal["joined"]
    reason: MembershipReason
    cause_event_id: EventId | None
    cause_at: Timestamp | None
    at: Timestamp


class ErasureRequested(Message):
    """`erasure.requests`: the customer asked to be forgotten; every service deletes them."""

    event_id: EventId
    customer_id: CustomerId
    requested_at: Timestamp
    # Drawn from the customer's consent sequence after the erasure's own denials: every consent
    # change committed before the erasure is lower, every later one (a new signup) higher. None on
    # records written before it existed.
    sequence: ConsentSequence | None = None


class ModelTrained(Message):
    """`model.trainings` (key `model_id`): a segmentation model was trained and stored.

    Published by `segwarden model train`; the audit service records it as `model_trained`
    (subject null). Counts only: nothing in it names a customer.
    """

    event_id: EventId
    model_id: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
    purpose: PurposeId
    algorithm: ShortText
    clusters: Annotated[int, Field(ge=2)]
    features: tuple[Annotated[str, StringConstraints(max_length=64)], ...]
    n_training: Annotated[int, Field(ge=0)]
    n_without_consent: Annotated[int, Field(ge=0)]
    cluster_sizes: tuple[Annotated[int, Field(ge=0)], ...]
    silhouette: float | None
    sha256: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
    trained_at: Timestamp


class RetentionRun(Message):
    """`retention.runs` (key: the service): one run of a retention job, counted; names no one.

    Published by each consent process (history past its purpose's retention pseudonymized) and
    each segmenter worker (customers inactive past their purposes' retention let go, over the
    partitions it owns) after every run, also one that found nothing; the audit service records
    it as `retention_run` (subject null).
    """

    event_id: EventId
    service: Literal["consent", "segmenter"]
    started_at: Timestamp
    finished_at: Timestamp
    # consent: customers with history rows retired; segmenter: customers whose features were purged.
    customers: Annotated[int, Field(ge=0)]
    # consent: history rows pseudonymized, per purpose (empty for the segmenter, whose leaves
    # are each in the ledger already, as `membership_change` with reason `retention_expired`).
    records: dict[PurposeId, Annotated[int, Field(ge=0)]] = Field(default_factory=dict)


class DeliveryOutcome(Message):
    """`delivery.outcomes` (key `subject`): how one webhook to a third-party destination ended.

    Published by the delivery service, recorded by the audit service as `delivery_outcome`.
    `subject` is the customer's pseudonym under PSEUDONYM_KEY (the ledger's subject), never the
    customer id; `reason` is the membership's reason, or `consent_granted`, `consent_withdrawn`
    or `erased`.
    """

    event_id: EventId  # `<idempotency key>:<status>`: one outcome per webhook
    subject: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
    destination_id: Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]
    segment_id: SegmentId
    action: MembershipAction
    reason: Annotated[str, StringConstraints(pattern=r"^[a-z_]{1,64}$")]
    # delivered: acknowledged (2xx); dead: given up after the last attempt; withheld: not sent,
    # the destination lost its agreement or was deleted before it went.
    status: Literal["delivered", "dead", "withheld"]
    attempts: Annotated[int, Field(ge=0)]
    at: Timestamp  # when it ended


class DestinationChanged(Message):
    """`delivery.destinations` (key `destination_id`): a third-party destination was created,
    changed (a `PUT`), paused (its endpoint answered 410 Gone), resumed (a `PUT` of a paused one)
    or deleted. Published by the delivery service, recorded by the audit service as
    `destination_change` (subject null). It holds ids and counts only: never the signing secret,
    the endpoint or the agreement's text.
    """

    event_id: EventId  # `<destination id>:<store sequence>`: one per change
    destination_id: Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]
    change: Literal["created", "changed", "paused", "resumed", "deleted"]
    # What it receives after the change (empty once deleted).
    segments: list[SegmentId] = Field(default_factory=list)
    purposes: list[PurposeId] = Field(default_factory=list)
    # Its webhooks still pending at the change (for `deleted`: the ones dropped with it).
    pending: Annotated[int, Field(ge=0)] = 0
    at: Timestamp


class AuditRecord(Message):
    """`audit.log`: one ledger record, hash-chained to the one before it."""

    seq: Annotated[int, Field(ge=0)]
    at: Timestamp
    kind: Annotated[str, StringConstraints(pattern=r"^[a-z_]{1,64}$")]
    subject: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")] | None
    event_id: EventId
    payload: dict[str, Any]
    prev_hash: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
    hash: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]


class DeadLetter(Message):
    """`<topic>.dlq`: an input that failed to parse or validate, with the reason.

    The record's key is `key_pseudonym` (the input's key is never copied); `value` is at most
    `DEAD_LETTER_MAX_VALUE_BYTES` of the input (`truncated` when cut; `value_bytes` its size).
    """

    error: str
    topic: str
    partition: int
    offset: int
    value: str
    key_pseudonym: str | None = None  # HMAC-SHA256 of the input's key, as the audit `subject`
    value_bytes: int | None = None  # the input value's size; null on letters from before it
    truncated: bool = False
