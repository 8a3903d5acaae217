"""The consent service's app factory: routers, readiness, and the runtime in the lifespan."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, Response
from sqlalchemy.exc import OperationalError

from services.consent.api import consents, dsr, preference_requests, preferences, purposes
from services.consent.bootstrap import ConsentRuntime, readiness_checks
from services.consent.settings import ConsentSettings
from shared.auth import load_tokens
from shared.http import (
    API_ERRORS,
    Readiness,
    error_response,
    install_error_handlers,
    install_operational_routes,
    install_request_guard,
)

log = logging.getLogger(__name__)


def create_app(settings: ConsentSettings) -> FastAPI:
    runtime = ConsentRuntime(settings)
    readiness = Readiness()
    for name, check in readiness_checks(runtime).items():
        readiness.add(name, check)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await runtime.start()
        try:
            yield
        finally:
            await runtime.stop()

    app = FastAPI(title="segwarden consent", version="0.1.0", lifespan=lifespan)
    app.state.tokens = load_tokens(settings)
    app.state.consent = runtime.service
    app.state.peers = runtime.peers
    app.state.receipts = runtime.receipts
    app.state.runtime = runtime
    app.state.preference_access = runtime.preference_access
    install_request_guard(app, settings.max_body_bytes)
    install_operational_routes(app, readiness)
    install_error_handlers(app)
    app.add_exception_handler(OperationalError, _store_unavailable)
    for router in (purposes.router, consents.router, dsr.router, preferences.links):
        app.include_router(router, responses=API_ERRORS)
    # The customer's own pages: a link's token, not a bearer token, lets the caller in.
    app.include_router(preferences.page)
    app.include_router(preference_requests.router)
    app.include_router(preferences.well_known)
    return app


async def _store_unavailable(request: Request, exc: Exception) -> Response:
    # The store is the system of record: without it nothing can be answered or recorded, and a
    # 503 tells the caller to retry, where a 500 would say the request itself was at fault.
    log.error("the consent store is unavailable", extra={"error": type(exc).__name__})
    return error_response(503, "the consent store is unavailable; retry later")
