"""The consent service's app factory: routers, readiness, and the runtime in the lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from services.consent.api import consents, dsr, purposes
from services.consent.bootstrap import ConsentRuntime, readiness_checks
from services.consent.settings import ConsentSettings
from shared.auth import load_tokens
from shared.http import Readiness, install_operational_routes


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
    app.state.runtime = runtime
    install_operational_routes(app, readiness)
    for router in (purposes.router, consents.router, dsr.router):
        app.include_router(router)
    return app
