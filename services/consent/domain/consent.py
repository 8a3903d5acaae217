"""The consent policy, free of I/O: effective state, defaults, GPC, expiry and erasure decisions."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from shared.events import ConsentChanged, ConsentReason, ConsentStatus, Jurisdiction

Method = Literal["api", "kafka", "gpc", "expiry", "erasure"]


class InvalidConsentError(ValueError):
    """A consent request breaks a rule; `field` names the offending input."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class CurrentConsent:
    """The latest recorded choice of one customer for one purpose."""

    status: ConsentStatus
    recorded_at: datetime
    source: str
    jurisdiction: Jurisdiction
    policy_version: str
    expires_at: datetime | None = None
    # The consent sequence of the row that set this state; None for a pre-sequence row.
    sequence: int | None = None
    # The version of the purpose's notice the choice was made under; None when not given.
    notice_version: int | None = None

    def effective_at(self, now: datetime) -> bool:
        return self.status == "granted" and (self.expires_at is None or self.expires_at > now)


@dataclass(frozen=True)
class RecordConsent:
    """Command: record a customer's choice for one purpose (from the API or consent.requests)."""

    customer_id: str
    purpose: str
    status: ConsentStatus
    source: str
    jurisdiction: Jurisdiction
    policy_version: str
    expires_at: datetime | None = None
    method: Method = "api"
    gpc: bool = False
    user_agent: str | None = None
    ip_truncated: str | None = None
    request_id: str | None = None
    notice_version: int | None = None


@dataclass(frozen=True)
class ConsentEntry:
    """One history row to write; `publishes` when it changes the effective state."""

    event_id: str
    customer_id: str
    purpose: str
    status: ConsentStatus
    previous_status: ConsentStatus | None
    reason: ConsentReason
    method: Method
    source: str
    jurisdiction: Jurisdiction
    policy_version: str
    recorded_at: datetime
    expires_at: datetime | None
    publishes: bool
    user_agent: str | None = None
    ip_truncated: str | None = None
    # Assigned by the store in the transaction that records the entry (None until then).
    sequence: int | None = None
    notice_version: int | None = None

    def as_current(self) -> CurrentConsent:
        return CurrentConsent(
            self.status,
            self.recorded_at,
            self.source,
            self.jurisdiction,
            self.policy_version,
            self.expires_at,
            self.sequence,
            self.notice_version,
        )

    def to_event(self) -> ConsentChanged:
        return ConsentChanged(
            event_id=self.event_id,
            customer_id=self.customer_id,
            purpose=self.purpose,
            status=self.status,
            previous_status=self.previous_status,
            reason=self.reason,
            source=self.source,
            jurisdiction=self.jurisdiction,
            policy_version=self.policy_version,
            recorded_at=self.recorded_at,
            expires_at=self.expires_at,
            sequence=self.sequence,
        )


@dataclass(frozen=True)
class ErasureRecord:
    """The proof kept of an erasure, under the customer's pseudonym."""

    event_id: str
    requested_at: datetime
    records_deleted: int


@dataclass(frozen=True)
class ErasureHoldings:
    """What the consent store still holds that names an erased customer."""

    records: int  # consent records (a signup after the erasure)
    unsent: int  # the erasure's outbox rows (denials, tombstone, request) not yet on the topics
