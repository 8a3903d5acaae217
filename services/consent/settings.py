"""Settings of the consent service."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr

from shared.settings import ServiceSettings, renamed


class ConsentSettings(ServiceSettings):
    consent_port: int = Field(8001, ge=1, le=65535)
    # `sqlite:///$DATA_DIR/consent.db` when unset (`db_url`); `postgresql://…` in production.
    consent_db_url: str | None = None
    # How often the expiry job looks for grants past their expires_at.
    consent_expiry_interval_s: float = renamed(
        "consent_expiry_interval_s", "consent_expiry_interval", default=30.0, gt=0, le=86_400
    )
    # How often the retention job pseudonymizes history past its purpose's retention.
    consent_retention_interval_s: float = renamed(
        "consent_retention_interval_s", "consent_retention_interval", default=3600.0, gt=0, le=86_400
    )
    # The relay is woken by each commit; this poll only finds rows a crashed process left behind.
    consent_outbox_poll_interval_s: float = renamed(
        "consent_outbox_poll_interval_s", "consent_outbox_poll_interval", default=2.0, gt=0, le=3600
    )
    # A consent PUT answers once its change is published, waiting at most this long; 0 answers
    # at commit. Joins decided after the answer then see the change.
    consent_publish_wait_s: float = renamed(
        "consent_publish_wait_s", "consent_publish_wait", default=2.0, ge=0, le=30
    )
    # Sent outbox rows are kept this long for inspection, then pruned (history is the record).
    consent_outbox_retention_s: int = renamed(
        "consent_outbox_retention_s", "consent_outbox_retention_seconds", default=3600, ge=0
    )
    # Give up on a peer service (segmenter, audit) after this long when building an export.
    consent_export_timeout_s: float = renamed(
        "consent_export_timeout_s", "consent_export_timeout", default=3.0, gt=0, le=60
    )
    # How long a preference-center link opens the page (default 7 days).
    consent_preference_link_ttl_s: int = renamed(
        "consent_preference_link_ttl_s", "preference_link_ttl", default=7 * 86_400, ge=60, le=90 * 86_400
    )
    # The Fernet key of preference links (urlsafe base64 of 32 bytes); unset: generated into DATA_DIR.
    consent_preference_link_key: SecretStr | None = renamed(
        "consent_preference_link_key", "preference_link_key", default=None
    )
    # Where customers reach the consent service (links start with it); unset: the URL of the request.
    consent_preference_center_url: str | None = renamed(
        "consent_preference_center_url", "preference_center_url", default=None
    )
    # The currency purchase amounts are in (ISO 4217): the preference center says "you spent at
    # least 100 EUR"; the segmenter sums amounts as sent, without converting.
    consent_shop_currency: str = renamed(
        "consent_shop_currency", "shop_currency", default="EUR", pattern=r"^[A-Z]{3}$"
    )
    # The preference catalog (zero-party preferences customers may state); unset: the shipped one.
    consent_preferences_file: Path | None = renamed(
        "consent_preferences_file", "preferences_file", default=None
    )

    @property
    def db_url(self) -> str:
        return self.consent_db_url or self.sqlite_url("consent.db")

    @property
    def consumer_group(self) -> str:
        return f"{self.topic_prefix}segwarden-consent"
