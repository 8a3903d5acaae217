"""Annotated dependencies of the segmenter's routes: the runtime and the scopes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, status

from services.segmenter.bootstrap import SegmenterRuntime
from services.segmenter.handlers import DefinitionService
from shared.auth import Principal, require_scope
from shared.http import app_runtime

Runtime = Annotated[SegmenterRuntime, Depends(app_runtime)]
# Each route's first parameter (`_: SegmentsRead`), as in every service.
SegmentsRead = Annotated[Principal, require_scope("segments:read")]
SegmentsWrite = Annotated[Principal, require_scope("segments:write")]


def definitions(runtime: SegmenterRuntime) -> DefinitionService:
    """The definitions, once the broker is connected (503 before: writes must reach the topic)."""
    if runtime.definitions is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "starting: the broker is not connected yet")
    return runtime.definitions
