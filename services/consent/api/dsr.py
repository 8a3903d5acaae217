"""Data-subject requests: erasure and the access (export) bundle."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

from fastapi import APIRouter, HTTPException, status

from services.consent.adapters.http_peers import HttpPeerExport, PeerUnavailableError
from services.consent.api.deps import CustomerId, Dsr, PeersDep, PreferencesDep, ReceiptsDep, ServiceDep
from services.consent.api.preferences import AccessDep
from services.consent.api.schemas import (
    ConsentRecordOut,
    ErasureAccepted,
    ErasureReceiptOut,
    ExportOut,
    PurposeStateOut,
)
from services.consent.preference.access import PreferenceAccess
from services.consent.preference.zero_party import StatedPreferences
from services.consent.receipt import ErasureReceipts
from services.consent.service import ConsentService
from shared.events import utcnow

router = APIRouter(prefix="/v1/customers/{customer_id}", tags=["data subject requests"])


@router.post(
    "/erasure",
    response_model=ErasureAccepted,
    status_code=status.HTTP_202_ACCEPTED,
)
async def erase(_: Dsr, customer_id: CustomerId, service: ServiceDep, access: AccessDep) -> ErasureAccepted:
    """Delete the customer's consent details and tell every service to forget them."""
    return await erase_customer(customer_id, service, access)


@router.get("/erasure", response_model=ErasureReceiptOut)
async def erasure_receipt(_: Dsr, customer_id: CustomerId, receipts: ReceiptsDep) -> ErasureReceiptOut:
    """The receipt of the customer's latest erasure: each service's part, topics, ledger proof."""
    receipt = await receipts.receipt(customer_id)
    if receipt is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no erasure recorded for this customer")
    return receipt


@router.get("/export", response_model=ExportOut)
async def export(
    _: Dsr,
    customer_id: CustomerId,
    service: ServiceDep,
    peers: PeersDep,
    receipts: ReceiptsDep,
    preferences: PreferencesDep,
) -> ExportOut:
    """The access bundle: consents, history and stated preferences from here, segments and audit
    trail from the peers, and the latest erasure's receipt."""
    return await access_export(customer_id, service, peers, receipts, preferences)


async def erase_customer(
    customer_id: str, service: ConsentService, access: PreferenceAccess
) -> ErasureAccepted:
    """The erasure use case, for the officer's route and the customer's own page."""
    # First: a click on a preference link after the erasure would record the customer anew.
    await access.revoke(customer_id)
    request = await service.erase(customer_id)
    return ErasureAccepted(event_id=request.event_id, requested_at=request.requested_at)


async def access_export(
    customer_id: str,
    service: ConsentService,
    peers: HttpPeerExport,
    receipts: ErasureReceipts,
    preferences: StatedPreferences,
) -> ExportOut:
    """The access bundle, for the officer's route and the customer's own download."""
    # Two groups of at most six, which asyncio.gather types; they still run at once.
    (states, history, stated, erasure), (segments, audit, destinations) = await asyncio.gather(
        asyncio.gather(
            service.states(customer_id),
            service.history(customer_id),
            preferences.stated(customer_id),
            receipts.receipt(customer_id),
        ),
        asyncio.gather(
            _optional(peers.segments(customer_id)),
            _optional(peers.audit_trail(customer_id)),
            _optional(peers.propagation(customer_id)),
        ),
    )
    parts = (("segmenter", segments), ("audit", audit), ("delivery", destinations))
    unavailable = [name for name, part in parts if part is None]
    return ExportOut(
        customer_id=customer_id,
        generated_at=utcnow(),
        consents={p: PurposeStateOut.model_validate(s.model_dump()) for p, s in states.items()},
        history=[ConsentRecordOut.model_validate(row) for row in history],
        preferences=stated,
        segments=segments,
        audit=audit,
        destinations=destinations,
        unavailable=unavailable,
        erasure=erasure,
    )


async def _optional(part: Awaitable[Any]) -> Any | None:
    try:
        return await part
    except PeerUnavailableError:
        return None
