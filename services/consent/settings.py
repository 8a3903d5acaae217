"""Settings of the consent service."""

from __future__ import annotations

from pydantic import Field

from shared.settings import ServiceSettings


class ConsentSettings(ServiceSettings):
    consent_port: int = Field(8001, ge=1, le=65535)
    consent_db_url: str | None = None

    @property
    def db_url(self) -> str:
        return self.consent_db_url or self.sqlite_url("consent.db")
