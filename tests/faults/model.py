"""The expected membership, computed independently of the segmenter's code: the segment rules
written again in Python, features from the events the workload sent, consent from the consent
service's own history (read through its API)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

Rule = Callable[["Features"], bool]
# A choice's PUT on the workload's clock (sent, acknowledged), by the event_id the API answered:
# the recorded record was committed in between. The workload's clock is the segmenter's (one
# host); the consent service's own `recorded_at` is not (a consent clock can step).
Window = tuple[datetime, datetime]


@dataclass
class Features:
    spend: float = 0.0
    purchases: int = 0
    events: int = 0


@dataclass(frozen=True)
class SegmentSpec:
    """A segment as PUT to the segmenter, and the same rule as a Python predicate."""

    segment_id: str
    rule: str
    purposes: tuple[str, ...]
    holds: Rule

    def body(self) -> dict[str, Any]:
        return {"name": self.segment_id, "rule": self.rule, "required_purposes": list(self.purposes)}


SEGMENTS = (
    SegmentSpec("spenders", "total_spend >= 150", ("marketing_email",), lambda f: f.spend >= 150),
    SegmentSpec("regulars", "purchase_count >= 2", ("marketing_sms",), lambda f: f.purchases >= 2),
    SegmentSpec(
        "engaged",
        "event_count >= 3",
        ("marketing_email", "personalization"),
        lambda f: f.events >= 3,
    ),
    # Needs no consent: shows that the event path evaluated every event.
    SegmentSpec("buyers", "purchase_count >= 1", (), lambda f: f.purchases >= 1),
)
BY_ID = {s.segment_id: s for s in SEGMENTS}


@dataclass(frozen=True)
class ConsentRecord:
    """One row of `GET /v1/customers/{id}/consents/history`."""

    event_id: str
    purpose: str
    status: str
    reason: str
    recorded_at: datetime
    expires_at: datetime | None
    sequence: int | None
    position: int  # its place in the history as listed (oldest first)
    window: Window | None = None  # None for what the service recorded itself (an expiry)

    @classmethod
    def parse(cls, row: dict[str, Any], position: int, window: Window | None = None) -> ConsentRecord:
        expires = row.get("expires_at")
        return cls(
            event_id=row["event_id"],
            purpose=row["purpose"],
            status=row["status"],
            reason=row["reason"],
            recorded_at=datetime.fromisoformat(row["recorded_at"]),
            expires_at=datetime.fromisoformat(expires) if expires else None,
            sequence=row.get("sequence"),
            position=position,
            window=window,
        )

    @property
    def committed_after(self) -> datetime:
        """The earliest it can have been in force, on the workload's (and segmenter's) clock."""
        return self.window[0] if self.window else self.recorded_at

    @property
    def committed_by(self) -> datetime:
        """When it was certainly in force: the API had acknowledged it."""
        return self.window[1] if self.window else self.recorded_at

    @property
    def in_force_from(self) -> datetime:
        """Where the checks place it: a grant as soon as it may count, a denial once it surely did,
        so a join is blamed only on an opt-out that had been acknowledged."""
        return self.committed_after if self.status == "granted" else self.committed_by

    def effective_at(self, moment: datetime) -> bool:
        return self.status == "granted" and (self.expires_at is None or self.expires_at > moment)


@dataclass
class ConsentHistory:
    """One customer's consent history, in the consent service's order (sequence when it has one)."""

    records: list[ConsentRecord]

    @classmethod
    def parse(cls, rows: list[dict[str, Any]], windows: Mapping[str, Window] | None = None) -> ConsentHistory:
        windows = windows or {}
        records = [ConsentRecord.parse(row, i, windows.get(row["event_id"])) for i, row in enumerate(rows)]
        if records and all(r.sequence is not None for r in records):
            records.sort(key=lambda r: r.sequence or 0)
        return cls(records)

    def latest(self, purpose: str, moment: datetime) -> ConsentRecord | None:
        """The purpose's record in force at `moment`: in the history's order, the last one placed
        (`in_force_from`) at or before it."""
        found = None
        for record in self.records:
            if record.purpose == purpose and record.in_force_from <= moment:
                found = record
        return found

    def effective(self, purpose: str, moment: datetime) -> bool:
        """Fail closed: nothing recorded means the catalog default, denied."""
        record = self.latest(purpose, moment)
        return record is not None and record.effective_at(moment)

    def opt_outs(self) -> list[ConsentRecord]:
        return [r for r in self.records if r.status == "denied"]


@dataclass
class Model:
    features: dict[str, Features] = field(default_factory=dict)
    history: dict[str, ConsentHistory] = field(default_factory=dict)
    # When the consent API answered each choice it had published (by event id): from then on,
    # every join decision must see it.
    acknowledged: dict[str, datetime] = field(default_factory=dict)
    windows: dict[str, Window] = field(default_factory=dict)  # by event_id, from the workload's PUTs

    def customers(self) -> list[str]:
        return sorted(set(self.features) | set(self.history))

    def expected(self, customer: str, moment: datetime) -> set[str]:
        """The segments the customer must be in at `moment` (quiescence: now)."""
        features = self.features.get(customer, Features())
        history = self.history.get(customer, ConsentHistory([]))
        return {
            s.segment_id
            for s in SEGMENTS
            if s.holds(features) and all(history.effective(p, moment) for p in s.purposes)
        }

    def members(self, segment_id: str, moment: datetime) -> set[str]:
        return {c for c in self.customers() if segment_id in self.expected(c, moment)}
