"""`/v1/purposes`: the purpose catalog."""

from __future__ import annotations

from fastapi import APIRouter

from services.consent.api.deps import ConsentRead, ServiceDep
from services.consent.api.schemas import PurposeOut, PurposesOut

router = APIRouter(prefix="/v1/purposes", tags=["purposes"])


@router.get("", response_model=PurposesOut)
async def list_purposes(_: ConsentRead, service: ServiceDep) -> PurposesOut:
    """The purpose catalog: lawful basis, default per jurisdiction, sale/share flag, retention."""
    purposes = [PurposeOut.model_validate(p.model_dump()) for p in service.policy.catalog.purposes]
    return PurposesOut(purposes=purposes)
