"""The consent service's app: its routers and state on the shared skeleton (`create_service_app`)."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request, Response
from sqlalchemy.exc import OperationalError

from services.consent.api import (
    consents,
    dsr,
    feelings,
    preference_choices,
    preference_requests,
    preferences,
    purposes,
)
from services.consent.bootstrap import ConsentRuntime
from services.consent.settings import ConsentSettings
from shared.http import create_service_app, error_response

log = logging.getLogger(__name__)


def create_app(settings: ConsentSettings) -> FastAPI:
    runtime = ConsentRuntime(settings)
    return create_service_app(
        "consent",
        settings,
        runtime,
        [purposes.router, consents.router, dsr.router, preferences.links, feelings.officer],
        # The customer's own pages: a link's token, not a bearer token, lets the caller in.
        public_routers=[
            preferences.page,
            preference_requests.router,
            preference_choices.router,
            feelings.router,
            preferences.well_known,
        ],
        exception_handlers={OperationalError: _store_unavailable},
    )


async def _store_unavailable(request: Request, exc: Exception) -> Response:
    # The store is the system of record: without it nothing can be answered or recorded, and a
    # 503 tells the caller to retry, where a 500 would say the request itself was at fault.
    log.error("the consent store is unavailable", extra={"error": type(exc).__name__})
    return error_response(503, "the consent store is unavailable; retry later")
