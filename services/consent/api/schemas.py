"""Request and response models of the consent API (ordinary models: FastAPI validates parsed JSON)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.events import Timestamp

Status = Literal["granted", "denied"]
JurisdictionName = Literal["GDPR", "CCPA", "OTHER"]


class ConsentChoice(BaseModel):
    """The body of `PUT /v1/customers/{customer_id}/consents/{purpose}`."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "status": "granted",
                    "source": "preference-center",
                    "jurisdiction": "GDPR",
                    "policy_version": "2026-03",
                    "expires_at": "2027-03-01T00:00:00Z",
                }
            ]
        },
    )

    status: Status
    source: str = Field(min_length=1, max_length=256, examples=["preference-center"])
    jurisdiction: JurisdictionName
    policy_version: str = Field(min_length=1, max_length=256, examples=["2026-03"])
    expires_at: Timestamp | None = None
    notice_version: int | None = Field(
        None, ge=1, description="the version of the purpose's notice (GET /v1/purposes) the customer saw"
    )


class ConsentRecordOut(BaseModel):
    """One recorded change, as stored (IP truncated to its network)."""

    event_id: str
    customer_id: str
    purpose: str
    status: Status
    previous_status: Status | None
    reason: str
    method: str
    source: str
    jurisdiction: JurisdictionName
    policy_version: str
    recorded_at: datetime
    expires_at: datetime | None
    published: bool = Field(description="whether it changed the effective state (and was published)")
    user_agent: str | None = None
    ip_truncated: str | None = None
    sequence: int | None = Field(
        None, description="the customer's consent sequence (commit order); null if recorded before it"
    )
    notice_version: int | None = Field(None, description="the notice version the choice was made under")


class RecordedConsentOut(ConsentRecordOut):
    also_recorded: list[ConsentRecordOut] = Field(
        default_factory=list, description="other rows the same request recorded (GPC denials)"
    )
    pending_publication: bool = Field(
        False,
        description="true when the answer came before the change was on consent.changes (the broker"
        " was away for CONSENT_PUBLISH_WAIT_S seconds); the outbox publishes it once the broker is back",
    )


class PurposeStateOut(BaseModel):
    status: Status
    effective: bool
    recorded_at: datetime | None = None
    source: str | None = None
    expires_at: datetime | None = None
    jurisdiction: JurisdictionName | None = None
    policy_version: str | None = None
    sequence: int | None = None
    notice_version: int | None = None


class ConsentsOut(BaseModel):
    customer_id: str
    purposes: dict[str, PurposeStateOut]


class HistoryOut(BaseModel):
    customer_id: str
    history: list[ConsentRecordOut]


class PurposeOut(BaseModel):
    id: str
    description: str
    lawful_basis: str
    defaults: dict[JurisdictionName, Status]
    sale_or_share: bool
    retention_days: int
    data_categories: list[str]
    notice: str
    notice_version: int
    notice_translations: dict[str, str]


class PurposesOut(BaseModel):
    purposes: list[PurposeOut]


class ErasureAccepted(BaseModel):
    status: Literal["accepted"] = "accepted"
    event_id: str
    requested_at: datetime


ErasureState = Literal["done", "pending", "unavailable"]


class ServiceErasureOut(BaseModel):
    """One service's part of an erasure: done, pending (and what it still holds) or unavailable."""

    status: ErasureState
    detail: str
    remains: list[str] = []


class TopicRetentionOut(BaseModel):
    """How long a topic can still hold the customer's raw id (records written up to the erasure)."""

    topic: str
    until: datetime | None
    bound: str


class LedgerProofOut(BaseModel):
    """The erasure's ledger record, a signed checkpoint covering it and its RFC 9162 inclusion proof."""

    seq: int
    record_hash: str  # the leaf: SHA-256 over 0x00 and these bytes is the leaf hash
    tree_size: int
    root: str
    path: list[str]
    checkpoint: dict[str, Any]  # as GET /v1/audit/checkpoint gives it: root, timestamp, signature, key


class ErasureReceiptOut(BaseModel):
    """`GET /v1/customers/{customer_id}/erasure`: the state of the customer's latest erasure."""

    customer_id: str
    subject: str  # the pseudonym the consent store and the ledger keep
    event_id: str
    requested_at: datetime
    status: Literal["done", "pending"]  # done when every service's part is done
    services: dict[str, ServiceErasureOut]  # consent, segmenter, audit
    topics: list[TopicRetentionOut]
    ledger: LedgerProofOut | None


class ExportOut(BaseModel):
    """The data-subject access bundle; a peer that did not answer is named in `unavailable`."""

    customer_id: str
    generated_at: datetime
    consents: dict[str, PurposeStateOut]
    history: list[ConsentRecordOut]
    # The zero-party preferences the customer stated on the preference center, by key.
    preferences: dict[str, str | list[str]] = Field(default_factory=dict)
    segments: Any | None
    audit: list[Any] | None
    # The third-party destinations that got the customer (the delivery service's propagation).
    destinations: list[Any] | None = None
    unavailable: list[str]
    # The latest erasure's receipt, when the customer was ever erased.
    erasure: ErasureReceiptOut | None = None
