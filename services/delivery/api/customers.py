"""`GET /v1/customers/{customer_id}/propagation`: which destinations got the customer, and whether
the last change reached them (for the access export); `GET /v1/customers/{customer_id}/consent`:
which consent change delivery applied and what it sent for it (for the preference center)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path

from services.delivery.api.deps import Dsr, Runtime
from services.delivery.api.schemas import (
    AppliedConsent,
    CustomerConsentOut,
    DestinationPropagation,
    PropagationOut,
    SegmentPropagation,
    WebhookCounts,
)
from services.delivery.domain.destinations import Destination
from shared.events import CUSTOMER_ID_PATTERN

router = APIRouter(prefix="/v1/customers", tags=["customers"])


@router.get("/{customer_id}/propagation", response_model=PropagationOut)
async def propagation(
    _: Dsr, customer_id: Annotated[str, Path(pattern=CUSTOMER_ID_PATTERN)], runtime: Runtime
) -> PropagationOut:
    """Per destination and segment: held or not, and the last change with its delivery state."""
    rows = await asyncio.to_thread(runtime.store.propagation, customer_id)
    destinations = {d.destination_id: d for d in await asyncio.to_thread(runtime.store.list_destinations)}
    by_destination: dict[str, list[SegmentPropagation]] = {}
    for row in rows:
        by_destination.setdefault(row["destination_id"], []).append(_segment(row))
    return PropagationOut(
        customer_id=customer_id,
        destinations=[
            _destination(destination_id, destinations.get(destination_id), segments)
            for destination_id, segments in by_destination.items()
        ],
    )


@router.get("/{customer_id}/consent", response_model=CustomerConsentOut)
async def applied_consent(
    _: Dsr, customer_id: Annotated[str, Path(pattern=CUSTOMER_ID_PATTERN)], runtime: Runtime
) -> CustomerConsentOut:
    """Per purpose: the consent change delivery holds, the inputs that carried it, and its webhooks."""
    held = await asyncio.to_thread(runtime.store.applied_consent, customer_id)
    return CustomerConsentOut(
        customer_id=customer_id, purposes={purpose: _applied(state) for purpose, state in held.items()}
    )


def _applied(state: dict[str, Any]) -> AppliedConsent:
    statuses = state["statuses"]
    webhooks = WebhookCounts(
        total=sum(statuses.values()),
        delivered=statuses.get("delivered", 0),
        pending=statuses.get("pending", 0),
        failed=statuses.get("dead", 0) + statuses.get("withheld", 0),
    )
    return AppliedConsent(
        effective=state["effective"],
        sequence=state["sequence"],
        cause_ids=state["inputs"],
        applied_at=state["at"],
        webhooks=webhooks if state["inputs"] else None,
    )


def _segment(row: dict[str, Any]) -> SegmentPropagation:
    settled = row["settled_at"]
    return SegmentPropagation(
        segment_id=row["segment_id"],
        held=bool(row["held"]),
        last_action=row["action"],
        last_reason=row["reason"],
        last_status=row["status"],
        reached=row["status"] == "delivered",
        changed_at=row["at"],
        settled_at=None if settled is None else datetime.fromtimestamp(settled, UTC),
    )


def _destination(
    destination_id: str, destination: Destination | None, segments: list[SegmentPropagation]
) -> DestinationPropagation:
    agreement = destination.agreement if destination else None
    return DestinationPropagation(
        destination_id=destination_id,
        name=destination.name if destination else None,
        processor=agreement.processor if agreement else None,
        country=agreement.country if agreement else None,
        segments=segments,
    )
