"""`GET /v1/ropa`: records of processing activities (GDPR Art. 30), as JSON or CSV."""

from __future__ import annotations

import asyncio
from typing import Annotated, Literal

from fastapi import APIRouter, Header, Query, Response

from services.audit.adapters.http_destinations import DestinationsUnavailableError
from services.audit.api.deps import AuditRead, Runtime
from services.audit.api.schemas import RopaActivity, RopaOut
from services.audit.domain import ropa
from services.audit.domain.ledger import format_at
from shared.events import utcnow

router = APIRouter(prefix="/v1", tags=["ropa"])


@router.get(
    "/ropa",
    response_model=RopaOut,
    responses={200: {"content": {"text/csv": {}}, "description": "JSON, or CSV with ?format=csv"}},
)
async def records_of_processing(
    _: AuditRead,
    runtime: Runtime,
    format: Annotated[Literal["json", "csv"] | None, Query()] = None,
    accept: Annotated[str, Header()] = "application/json",
) -> RopaOut | Response:
    """Which purposes, data categories, recipients (segments, destinations) and retention; `?format=csv`
    for CSV; `unavailable` names the delivery service when its destinations could not be listed."""
    known = await asyncio.to_thread(runtime.ledger.known_definitions)
    try:
        destinations, unavailable = await runtime.destinations.list(), []
    except DestinationsUnavailableError:
        destinations, unavailable = [], ["delivery"]
    rows = ropa.activities(runtime.catalog, known, destinations)
    if format == "csv" or (format is None and "text/csv" in accept):
        headers = {"Content-Disposition": 'attachment; filename="ropa.csv"'}
        return Response(ropa.to_csv(rows), media_type="text/csv", headers=headers)
    activities = [RopaActivity(**row) for row in rows]
    return RopaOut(generated_at=format_at(utcnow()), activities=activities, unavailable=unavailable)
