"""Routes of /v1/customers: the segments a customer is in now."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from services.segmenter.api.deps import CanRead, Context
from services.segmenter.api.schemas import CustomerSegments
from shared.events import CUSTOMER_ID_PATTERN

router = APIRouter(prefix="/v1/customers", tags=["customers"])


@router.get("/{customer_id}/segments", response_model=CustomerSegments)
async def customer_segments(
    customer_id: Annotated[str, Path(pattern=CUSTOMER_ID_PATTERN)], ctx: Context, _: CanRead
) -> CustomerSegments:
    """The live segments of one customer (empty for an unknown customer: existence is not revealed)."""
    return CustomerSegments(customer_id=customer_id, segments=await ctx.membership.segments_of(customer_id))
