"""Settings of the consent service."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr

from shared.settings import ServiceSettings


class ConsentSettings(ServiceSettings):
    consent_port: int = Field(8001, ge=1, le=65535)
    consent_db_url: str | None = None
    # How often the expiry job looks for grants past their expires_at (seconds).
    consent_expiry_interval: float = Field(30.0, gt=0, le=86_400)
    # How often the retention job pseudonymizes history past its purpose's retention (seconds).
    consent_retention_interval: float = Field(3600.0, gt=0, le=86_400)
    # The relay is woken by each commit; this poll only finds rows a crashed process left behind.
    consent_outbox_poll_interval: float = Field(2.0, gt=0, le=3600)
    # A consent PUT answers once its change is published, waiting at most this long (seconds);
    # 0 answers at commit. Joins decided after the answer then see the change.
    consent_publish_wait: float = Field(2.0, ge=0, le=30)
    # Sent outbox rows are kept this long for inspection, then pruned (history is the record).
    consent_outbox_retention_seconds: int = Field(3600, ge=0)
    # Give up on a peer service (segmenter, audit) after this long when building an export.
    consent_export_timeout: float = Field(3.0, gt=0, le=60)
    # How long a preference-center link opens the page (seconds; default 7 days).
    preference_link_ttl: int = Field(7 * 86_400, ge=60, le=90 * 86_400)
    # The Fernet key of preference links (urlsafe base64 of 32 bytes); unset: generated into DATA_DIR.
    preference_link_key: SecretStr | None = None
    # Where customers reach the consent service (links start with it); unset: the URL of the request.
    preference_center_url: str | None = None
    # The currency purchase amounts are in (ISO 4217): the preference center says "you spent at
    # least 100 EUR"; the segmenter sums amounts as sent, without converting.
    shop_currency: str = Field("EUR", pattern=r"^[A-Z]{3}$")
    # The preference catalog (zero-party preferences customers may state); unset: the shipped one.
    preferences_file: Path | None = None

    @property
    def db_url(self) -> str:
        return self.consent_db_url or self.sqlite_url("consent.db")
