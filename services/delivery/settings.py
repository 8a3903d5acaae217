"""Settings of the delivery service."""

from __future__ import annotations

from pydantic import Field

from shared.settings import ServiceSettings


class DeliverySettings(ServiceSettings):
    delivery_port: int = Field(8004, ge=1, le=65535)
    # Attempts per webhook before it becomes a dead-letter record (the first one included).
    delivery_max_attempts: int = Field(8, ge=1, le=100)
    # Backoff between attempts: doubles from the initial delay up to the cap, with jitter.
    delivery_retry_initial_s: float = Field(0.5, gt=0, le=60)
    delivery_retry_cap_s: float = Field(60.0, gt=0, le=3600)
    # How long one POST may take before it counts as a failed attempt.
    delivery_timeout_s: float = Field(5.0, gt=0, le=60)
    # Consecutive failures of an endpoint that open its circuit, and how long it then stays open
    # before one webhook goes as a probe.
    delivery_breaker_failures: int = Field(5, ge=1, le=1000)
    delivery_breaker_cooldown_s: float = Field(30.0, gt=0, le=3600)
    # Webhooks in flight at once (each to a different destination and customer).
    delivery_concurrency: int = Field(16, ge=1, le=256)
    # How long an ended webhook (delivered, dead, withheld) and a relayed change to a destination
    # stay in the store, and how often the job that deletes older ones runs.
    delivery_outbox_retention_s: float = Field(30 * 86400.0, gt=0)
    delivery_prune_interval_s: float = Field(3600.0, gt=0, le=86400)

    @property
    def consumer_group(self) -> str:
        return f"{self.topic_prefix}segwarden-delivery"

    @property
    def db_url(self) -> str:
        """`sqlite:///$DATA_DIR/delivery.db`: one file of one process, so SQLite only, no setting."""
        self.ensure_data_dir()
        return self.sqlite_url("delivery.db")
