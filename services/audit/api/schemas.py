"""Response models of the audit API (separate from the topic models and the database rows)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


class AuditRecordOut(BaseModel):
    seq: int
    at: str
    kind: str
    subject: str | None
    event_id: str
    payload: dict[str, Any]
    prev_hash: str
    hash: str


class RecordPage(BaseModel):
    records: list[AuditRecordOut]
    # The seq to pass as `after_seq` for the next page; null when this page reached the end.
    next_after_seq: int | None


class CheckpointOut(BaseModel):
    tree_size: int
    root: str
    timestamp: str
    signature: str
    public_key: str
    # Beyond the contract: the hash of record tree_size - 1 and a signature over
    # "segwarden-audit-head\n{tree_size}\n{head}\n" (see docs/audit.md).
    head: str
    head_signature: str


class InclusionProofOut(BaseModel):
    seq: int
    tree_size: int
    root: str
    path: list[str]


class ConsistencyProofOut(BaseModel):
    first: int
    second: int
    first_root: str
    second_root: str
    path: list[str]


class VerifyOut(BaseModel):
    ok: bool
    length: int
    head: str
    first_bad_seq: int | None
    reason: str | None
    checkpoints_checked: int


class RopaActivity(BaseModel):
    activity: str
    purpose: str
    description: str
    lawful_basis: str
    data_subjects: str
    data_categories: list[str]
    recipients: list[str]
    segments: list[str]
    sale_or_share: bool
    retention_days: int | None


class RopaOut(BaseModel):
    generated_at: str
    activities: list[RopaActivity]
    # `delivery` when its destinations (recipients) could not be listed: the recipients are incomplete.
    unavailable: list[str] = []
