"""Settings of the audit service."""

from __future__ import annotations

import os

from pydantic import Field

from shared.settings import ServiceSettings, renamed


class AuditSettings(ServiceSettings):
    audit_port: int = Field(8003, ge=1, le=65535)
    # `sqlite:///$DATA_DIR/audit.db` when unset (`db_url`); `postgresql://…` in production.
    audit_db_url: str | None = None
    # A new signed checkpoint is made this often whenever the ledger has grown.
    audit_checkpoint_interval_s: float = renamed(
        "audit_checkpoint_interval_s", "checkpoint_interval", default=10.0, gt=0, le=3600
    )
    # Most source records appended in one transaction (and fetched in one poll).
    audit_batch_size: int = Field(1000, ge=1, le=50_000)
    # Proofs and verifications served at once; one more is a 503 with Retry-After, so a burst
    # of them cannot take every thread and the database from the consumer.
    audit_heavy_requests: int = Field(4, ge=1, le=256)
    # Processes that verify the chain at once, each a seq range of at least 50,000 records
    # (`verify` without Merkle roots); 0: one per CPU core. One by default: more win only where
    # cores are idle, and lose on a busy machine (docs/audit.md, Performance).
    audit_verify_workers: int = Field(1, ge=0, le=64)

    @property
    def db_url(self) -> str:
        if self.audit_db_url:
            return self.audit_db_url
        self.ensure_data_dir()
        return self.sqlite_url("audit.db")

    @property
    def verify_workers(self) -> int:
        return self.audit_verify_workers or os.cpu_count() or 1

    @property
    def consumer_group(self) -> str:
        return f"{self.topic_prefix}segwarden-audit"
