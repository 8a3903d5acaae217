"""The segmenter's app factory: HTTP API, faust stream and periodic jobs in one process and loop."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from services.segmenter.api import customers, models, segments
from services.segmenter.api.deps import ApiContext
from services.segmenter.bootstrap import SegmenterRuntime
from services.segmenter.settings import SegmenterSettings
from shared.auth import load_tokens
from shared.catalog import load_catalog
from shared.http import (
    API_ERRORS,
    Readiness,
    install_error_handlers,
    install_operational_routes,
    install_request_guard,
)

log = logging.getLogger(__name__)


def create_app(settings: SegmenterSettings) -> FastAPI:
    readiness = Readiness()
    runtime = SegmenterRuntime(settings)
    readiness.add("kafka", runtime.kafka_reason)
    readiness.add("redis", runtime.redis_reason)
    readiness.add("consent", runtime.consent_reason)
    readiness.add("definitions", runtime.definitions_reason)
    readiness.add("tasks", runtime.supervisor.check)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # A start-up that fails past its retried steps cannot start over: it stays on /readyz.
        runtime.supervisor.spawn("startup", runtime.start, restart=False)
        try:
            yield
        finally:
            await runtime.stop()

    app = FastAPI(title="segwarden segmenter", version="0.1.0", lifespan=lifespan)
    app.state.tokens = load_tokens(settings)
    app.state.runtime = runtime
    app.state.api = ApiContext(
        settings=settings,
        runtime=runtime,
        membership=runtime.membership_reader,
        catalog=load_catalog(settings.purposes_file),
    )
    install_request_guard(app, settings.max_body_bytes)
    install_operational_routes(app, readiness)
    install_error_handlers(app)
    for router in (segments.router, customers.router, models.router):
        app.include_router(router, responses=API_ERRORS)
    return app
