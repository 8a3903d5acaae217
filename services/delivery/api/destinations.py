"""`PUT/GET/DELETE /v1/destinations/{destination_id}`: third parties and their agreements."""

from __future__ import annotations

import asyncio
import time
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Response, status

from services.delivery.api.deps import DestinationsRead, DestinationsWrite, Runtime
from services.delivery.api.schemas import (
    DESTINATION_ID_PATTERN,
    AgreementIn,
    DestinationIn,
    DestinationList,
    DestinationOut,
)
from services.delivery.domain.destinations import Agreement, Destination, agreement_problem
from shared.http import unprocessable

router = APIRouter(prefix="/v1/destinations", tags=["destinations"])
DestinationId = Annotated[str, Path(pattern=DESTINATION_ID_PATTERN)]


@router.put(
    "/{destination_id}",
    response_model=DestinationOut,
    responses={201: {"model": DestinationOut, "description": "Created"}},
)
async def put_destination(
    _: DestinationsWrite,
    destination_id: DestinationId,
    spec: DestinationIn,
    runtime: Runtime,
    response: Response,
) -> DestinationOut:
    """Create or replace a destination; it receives only changes that happen from now on."""
    unknown = [(i, p) for i, p in enumerate(spec.purposes) if runtime.catalog.get(p) is None]
    if unknown:
        index, purpose = unknown[0]
        raise unprocessable(["body", "purposes", index], f"unknown purpose {purpose!r}")
    agreement = Agreement(**spec.agreement.model_dump()) if spec.agreement else None
    destination = Destination(
        destination_id=destination_id,
        name=spec.name,
        endpoint=str(spec.endpoint),
        segments=frozenset(spec.segments),
        purposes=frozenset(spec.purposes),
        agreement=agreement,
        identifier=spec.identifier,
        signing_secret=spec.signing_secret,
    )
    created = await asyncio.to_thread(runtime.store.put_destination, destination, time.time())
    runtime.dispatcher.wake()  # a PUT resumes a paused destination: its webhooks are due
    runtime.destination_changed()
    response.status_code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
    return await _out(runtime, destination)


@router.get("", response_model=DestinationList)
async def list_destinations(_: DestinationsRead, runtime: Runtime) -> DestinationList:
    """Every destination, as `GET /v1/destinations/{id}` shows it (the RoPA lists them as recipients)."""
    stored = await asyncio.to_thread(runtime.store.list_destinations)
    return DestinationList(destinations=[await _out(runtime, destination) for destination in stored])


@router.get("/{destination_id}", response_model=DestinationOut)
async def get_destination(
    _: DestinationsRead, destination_id: DestinationId, runtime: Runtime
) -> DestinationOut:
    """A destination, whether it receives (and why not), and its webhooks by state; never its secret."""
    destination = await asyncio.to_thread(runtime.store.get_destination, destination_id)
    if destination is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no destination {destination_id!r}")
    return await _out(runtime, destination)


@router.delete("/{destination_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_destination(
    _: DestinationsWrite, destination_id: DestinationId, runtime: Runtime
) -> Response:
    """Delete a destination and the webhooks still pending for it."""
    if not await asyncio.to_thread(runtime.store.delete_destination, destination_id, time.time()):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no destination {destination_id!r}")
    runtime.destination_changed()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


async def _out(runtime: Runtime, destination: Destination) -> DestinationOut:
    problem = agreement_problem(destination.agreement, datetime.now(UTC).date())
    paused = await asyncio.to_thread(runtime.store.paused, destination.destination_id)
    counts = await asyncio.to_thread(runtime.store.counts, destination.destination_id)
    agreement = destination.agreement
    return DestinationOut(
        destination_id=destination.destination_id,
        name=destination.name,
        endpoint=destination.endpoint,
        segments=sorted(destination.segments),
        purposes=sorted(destination.purposes),
        agreement=AgreementIn(**asdict(agreement)) if agreement else None,
        identifier=destination.identifier,
        status="suspended" if problem else "paused" if paused else "active",
        reason=problem or paused,
        circuit=runtime.dispatcher.breaker(destination.endpoint).state,
        deliveries=counts,
    )
