"""Routes of /v1/customers: the segments a customer is in now, and what is held about them."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path
from pydantic import BaseModel

from services.segmenter.adapters.redis_keys import CONSENT, SEGMENT, VERSION
from services.segmenter.api.deps import Runtime, SegmentsRead
from services.segmenter.api.schemas import CustomerSegments, ReasonOut, SegmentExplained
from services.segmenter.domain.segments import Segment
from services.segmenter.rules.explain import explain
from shared.events import CUSTOMER_ID_PATTERN

router = APIRouter(prefix="/v1/customers", tags=["customers"])
CustomerIdPath = Annotated[str, Path(pattern=CUSTOMER_ID_PATTERN)]
# What a customer's hash holds, by its fields (services/segmenter/adapters/redis_keys.py), and the outbox.
CUSTOMER_PARTS = ("f", "consent", "segs", "ver", "outbox")


def held_parts(fields: list[str], outbox: bool) -> list[str]:
    """`customer:<part>` for each part the customer's hash (its field names) and outbox hold."""
    held = {
        # Features and their applied offsets (`_o:`, `_t:`, `_r`): all the hash holds but the rest.
        "f": any(not f.startswith((CONSENT, SEGMENT)) and f != VERSION for f in fields),
        "consent": any(f.startswith(CONSENT) for f in fields),
        "segs": any(f.startswith(SEGMENT) for f in fields),
        "ver": VERSION in fields,
        "outbox": outbox,
    }
    return [f"customer:{part}" for part in CUSTOMER_PARTS if held[part]]


class CustomerHoldings(BaseModel):
    """What this segmenter's Redis holds under the customer's raw id; empty once it is forgotten."""

    customer_id: str
    # `customer:<part>` (features, consent, segments, version, outbox), `members:<segment>`,
    # `known:<partition>`, `expiry:<partition>`, `activity:<partition>`.
    held: list[str]


@router.get("/{customer_id}/segments", response_model=CustomerSegments)
async def customer_segments(
    _: SegmentsRead, customer_id: CustomerIdPath, runtime: Runtime
) -> CustomerSegments:
    """The live segments of one customer (empty for an unknown customer: existence is not revealed),
    each with why the customer is in it."""
    segment_ids = await runtime.membership_reader.segments_of(customer_id)
    found = (runtime.registry.get(segment_id) for segment_id in segment_ids)
    explained = [_explained(segment) for segment in found if segment is not None]
    return CustomerSegments(customer_id=customer_id, segments=segment_ids, explained=explained)


def _explained(segment: Segment) -> SegmentExplained:
    definition = segment.definition
    reason = ReasonOut.model_validate(explain(segment.rule.tree)) if segment.rule else None
    return SegmentExplained(
        segment_id=definition.segment_id,
        name=definition.name,
        description=definition.description,
        required_purposes=list(definition.required_purposes),
        reason=reason,
    )


class AppliedConsent(BaseModel):
    status: str
    sequence: int | None  # the customer's consent sequence of the change it holds
    recorded_at: float  # epoch seconds


class CustomerConsent(BaseModel):
    """The consent this segmenter has applied to the customer: per purpose, the state it holds."""

    customer_id: str
    purposes: dict[str, AppliedConsent]


@router.get("/{customer_id}/consent", response_model=CustomerConsent)
async def customer_consent(_: SegmentsRead, customer_id: CustomerIdPath, runtime: Runtime) -> CustomerConsent:
    """Which consent change of each purpose the segmenter holds (empty for an unknown customer), so
    the preference center can tell a customer that their choice reached segmentation."""
    snapshot = await runtime.store.read(customer_id)
    purposes = {
        purpose: AppliedConsent(status=state.status, sequence=state.sequence, recorded_at=state.recorded_at)
        for purpose, state in snapshot.consent.purposes.items()
    }
    return CustomerConsent(customer_id=customer_id, purposes=purposes)


@router.get("/{customer_id}/erasure", response_model=CustomerHoldings)
async def customer_holdings(
    _: SegmentsRead, customer_id: CustomerIdPath, runtime: Runtime
) -> CustomerHoldings:
    """Every key of the layout that still names the customer (the erasure receipt's segmenter part)."""
    reader = runtime.membership_reader
    keys, client = reader.keys, reader.client
    segment_ids = sorted(s.id for s in runtime.registry.all())
    partitions = range(runtime.settings.topic_partitions)
    async with client.pipeline(transaction=False) as pipe:
        pipe.hkeys(keys.state(customer_id))
        pipe.exists(keys.outbox(customer_id))
        for partition in partitions:
            pipe.zscore(keys.expiry(partition), customer_id)
        fields, outbox, *expiring = await pipe.execute()
    held = held_parts(fields, bool(outbox))
    held += await reader.indexed_in(customer_id, segment_ids, list(partitions))
    held += [f"expiry:{p}" for p, score in zip(partitions, expiring, strict=True) if score is not None]
    return CustomerHoldings(customer_id=customer_id, held=held)
