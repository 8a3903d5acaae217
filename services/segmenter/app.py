"""The segmenter's app: HTTP API, faust stream and periodic jobs in one process and loop, on the
shared skeleton (`shared.http.create_service_app`)."""

from __future__ import annotations

from fastapi import FastAPI

from services.segmenter.api import customers, models, segments
from services.segmenter.api.deps import ApiContext
from services.segmenter.bootstrap import SegmenterRuntime
from services.segmenter.settings import SegmenterSettings
from shared.catalog import load_catalog
from shared.http import create_service_app


def create_app(settings: SegmenterSettings) -> FastAPI:
    runtime = SegmenterRuntime(settings)
    api = ApiContext(
        settings=settings,
        runtime=runtime,
        membership=runtime.membership_reader,
        catalog=load_catalog(settings.purposes_file),
    )
    return create_service_app(
        "segmenter",
        settings,
        runtime,
        [segments.router, customers.router, models.router],
        state={"api": api},
        # The start waits on the broker, Redis and the compacted topics: HTTP serves meanwhile.
        start_in_background=True,
    )
