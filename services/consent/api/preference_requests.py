"""The customer's own data-subject requests from the preference center: download the access
export, request erasure (after a confirmation step); the link's token lets them in."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Response, status
from pydantic import BaseModel, ConfigDict, Field

from services.consent.api.deps import PeersDep, PreferencesDep, ReceiptsDep, ServiceDep
from services.consent.api.dsr import access_export, erase_customer
from services.consent.api.preferences import AccessDep, Claims
from services.consent.api.schemas import ErasureAccepted, ExportOut

router = APIRouter(prefix="/preferences/{token}", tags=["preference center"])
EXPORT_FILE = "my-data.json"


class ErasureConfirmation(BaseModel):
    """What the page's confirmation step sends: a request without it erases nothing (422)."""

    model_config = ConfigDict(extra="forbid")

    confirm: Literal[True] = Field(description="the customer confirmed that everything is to be erased")


@router.get("/export", response_model=ExportOut)
async def download_export(
    claims: Claims,
    response: Response,
    service: ServiceDep,
    peers: PeersDep,
    receipts: ReceiptsDep,
    preferences: PreferencesDep,
) -> ExportOut:
    """The customer's access export (as `GET /v1/customers/{id}/export`), as a file to save."""
    response.headers["Content-Disposition"] = f'attachment; filename="{EXPORT_FILE}"'
    response.headers["Cache-Control"] = "no-store"
    return await access_export(claims.customer_id, service, peers, receipts, preferences)


@router.post("/erasure", response_model=ErasureAccepted, status_code=status.HTTP_202_ACCEPTED)
async def request_erasure(
    claims: Claims, _: ErasureConfirmation, service: ServiceDep, access: AccessDep
) -> ErasureAccepted:
    """Erase the customer (as `POST /v1/customers/{id}/erasure`); the link stops working."""
    return await erase_customer(claims.customer_id, service, access)
