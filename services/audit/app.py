"""The audit service's app factory: the runtime (composition root) plus one router per resource."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from services.audit.api import proofs, records, ropa, verify
from services.audit.api.deps import HeavyRequests
from services.audit.bootstrap import AuditRuntime
from services.audit.settings import AuditSettings
from shared.auth import load_tokens
from shared.http import (
    API_ERRORS,
    Readiness,
    install_error_handlers,
    install_operational_routes,
    install_request_guard,
)


def create_app(settings: AuditSettings) -> FastAPI:
    runtime = AuditRuntime(settings)
    readiness = Readiness()
    readiness.add("database", runtime.database_ready)
    readiness.add("kafka", runtime.kafka_ready)
    readiness.add("consumer", runtime.consumer_ready)
    readiness.add("tasks", runtime.supervisor.check)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await runtime.start()
        try:
            yield
        finally:
            await runtime.stop()

    app = FastAPI(title="segwarden audit", version="0.1.0", lifespan=lifespan)
    app.state.tokens = load_tokens(settings)
    app.state.runtime = runtime
    app.state.heavy = HeavyRequests(settings.audit_heavy_requests)
    install_request_guard(app, settings.max_body_bytes)
    install_operational_routes(app, readiness)
    install_error_handlers(app)
    for router in (records.router, proofs.router, verify.router, ropa.router):
        app.include_router(router, responses=API_ERRORS)
    return app
