"""Settings of the audit service."""

from __future__ import annotations

from pydantic import Field

from shared.settings import ServiceSettings


class AuditSettings(ServiceSettings):
    audit_port: int = Field(8003, ge=1, le=65535)
