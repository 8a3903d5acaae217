"""The delivery service's app factory: the runtime (composition root) plus one router per resource."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from services.delivery.api import destinations
from services.delivery.bootstrap import DeliveryRuntime
from services.delivery.settings import DeliverySettings
from shared.auth import load_tokens
from shared.http import (
    API_ERRORS,
    Readiness,
    install_error_handlers,
    install_operational_routes,
    install_request_guard,
)


def create_app(settings: DeliverySettings) -> FastAPI:
    runtime = DeliveryRuntime(settings)
    readiness = Readiness()
    readiness.add("database", runtime.database_ready)
    readiness.add("kafka", runtime.kafka_ready)
    readiness.add("tasks", runtime.supervisor.check)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await runtime.start()
        try:
            yield
        finally:
            await runtime.stop()

    app = FastAPI(title="segwarden delivery", version="0.1.0", lifespan=lifespan)
    app.state.tokens = load_tokens(settings)
    app.state.runtime = runtime
    install_request_guard(app, settings.max_body_bytes)
    install_operational_routes(app, readiness)
    install_error_handlers(app)
    app.include_router(destinations.router, responses=API_ERRORS)
    return app
