"""The audit service's app: one router per resource on the shared skeleton (`create_service_app`)."""

from __future__ import annotations

from fastapi import FastAPI

from services.audit.api import proofs, records, ropa, verify
from services.audit.bootstrap import AuditRuntime
from services.audit.settings import AuditSettings
from shared.http import create_service_app


def create_app(settings: AuditSettings) -> FastAPI:
    return create_service_app(
        "audit",
        settings,
        AuditRuntime(settings),
        [records.router, proofs.router, verify.router, ropa.router],
    )
