"""The consent service's app factory (routes are mounted as the service grows)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from services.consent.settings import ConsentSettings
from shared.auth import load_tokens
from shared.http import Readiness, install_operational_routes
from shared.kafka import broker_answers, make_producer


def create_app(settings: ConsentSettings) -> FastAPI:
    readiness = Readiness()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        producer = make_producer(settings, "segwarden-consent")
        await producer.start()
        readiness.add("kafka", lambda: broker_answers(producer))
        try:
            yield
        finally:
            await producer.stop()

    app = FastAPI(title="segwarden consent", version="0.1.0", lifespan=lifespan)
    app.state.tokens = load_tokens(settings)
    install_operational_routes(app, readiness)
    return app
