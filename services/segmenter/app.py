"""The segmenter's app: HTTP API, faust stream and periodic jobs in one process and loop, on the
shared skeleton (`shared.http.create_service_app`)."""

from __future__ import annotations

from fastapi import FastAPI

from services.segmenter.api import customers, models, segments
from services.segmenter.bootstrap import SegmenterRuntime
from services.segmenter.settings import SegmenterSettings
from shared.http import create_service_app


def create_app(settings: SegmenterSettings) -> FastAPI:
    return create_service_app(
        "segmenter",
        settings,
        SegmenterRuntime(settings),
        [segments.router, customers.router, models.router],
        # The start waits on the broker, Redis and the compacted topics: HTTP serves meanwhile.
        start_in_background=True,
    )
