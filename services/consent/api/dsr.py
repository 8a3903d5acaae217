"""Data-subject requests: erasure and the access (export) bundle."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

from fastapi import APIRouter, status

from services.consent.api.deps import CustomerId, PeersDep, ServiceDep, scope
from services.consent.api.schemas import ConsentRecordOut, ErasureAccepted, ExportOut, PurposeStateOut
from services.consent.export import PeerUnavailableError
from shared.events import utcnow

router = APIRouter(prefix="/v1/customers/{customer_id}", tags=["data subject requests"])


@router.post(
    "/erasure",
    response_model=ErasureAccepted,
    status_code=status.HTTP_202_ACCEPTED,
    dependencies=[scope("dsr")],
)
async def erase(customer_id: CustomerId, service: ServiceDep) -> ErasureAccepted:
    """Delete the customer's consent details and tell every service to forget them."""
    request = await service.erase(customer_id)
    return ErasureAccepted(event_id=request.event_id, requested_at=request.requested_at)


@router.get("/export", response_model=ExportOut, dependencies=[scope("dsr")])
async def export(customer_id: CustomerId, service: ServiceDep, peers: PeersDep) -> ExportOut:
    """The access bundle: consents and history from here, segments and audit trail from the peers."""
    states, history, segments, audit = await asyncio.gather(
        service.states(customer_id),
        service.history(customer_id),
        _optional(peers.segments(customer_id)),
        _optional(peers.audit_trail(customer_id)),
    )
    unavailable = [name for name, part in (("segmenter", segments), ("audit", audit)) if part is None]
    return ExportOut(
        customer_id=customer_id,
        generated_at=utcnow(),
        consents={p: PurposeStateOut.model_validate(s.model_dump()) for p, s in states.items()},
        history=[ConsentRecordOut.model_validate(row) for row in history],
        segments=segments,
        audit=audit,
        unavailable=unavailable,
    )


async def _optional(part: Awaitable[Any]) -> Any | None:
    try:
        return await part
    except PeerUnavailableError:
        return None
