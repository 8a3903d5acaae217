"""Annotated dependencies of the segmenter's routes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status

from services.segmenter.adapters.redis_membership import RedisMembershipReader
from services.segmenter.bootstrap import SegmenterRuntime
from services.segmenter.definitions import DefinitionService
from services.segmenter.settings import SegmenterSettings
from shared.auth import Principal, require_scope
from shared.catalog import PurposeCatalog


@dataclass(frozen=True)
class ApiContext:
    """What the routes need, built once by the composition root."""

    settings: SegmenterSettings
    runtime: SegmenterRuntime
    membership: RedisMembershipReader
    catalog: PurposeCatalog

    @property
    def definitions(self) -> DefinitionService:
        """The definitions, once the broker is connected (503 before: writes must reach the topic)."""
        if self.runtime.definitions is None:
            raise HTTPException(
                status.HTTP_503_SERVICE_UNAVAILABLE, "starting: the broker is not connected yet"
            )
        return self.runtime.definitions


def _context(request: Request) -> ApiContext:
    context: ApiContext = request.app.state.api
    return context


Context = Annotated[ApiContext, Depends(_context)]
CanRead = Annotated[Principal, require_scope("segments:read")]
CanWrite = Annotated[Principal, require_scope("segments:write")]
