"""Routes of /v1/segments: definitions, members and k-anonymous stats."""

from __future__ import annotations

from collections import Counter
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query, status

from services.segmenter.api.deps import Runtime, SegmentsRead, SegmentsWrite, definitions
from services.segmenter.api.schemas import (
    MembersPage,
    SegmentDeleted,
    SegmentList,
    SegmentRequest,
    SegmentResponse,
    SegmentStats,
)
from services.segmenter.rules import RuleError, compile_rule
from shared.events import SEGMENT_ID_PATTERN, SegmentDefinition, new_event_id, utcnow
from shared.http import unprocessable
from shared.kanon import suppress_small_groups

router = APIRouter(prefix="/v1/segments", tags=["segments"])
SegmentIdPath = Annotated[str, Path(pattern=SEGMENT_ID_PATTERN)]
BREAKDOWN_ATTRS = ("country", "tier")
STATS_SCAN_LIMIT = 100_000
MAX_CURSOR = 2**64 - 1  # Redis refuses a larger SSCAN cursor with an error (a 500 if passed on)


def _validate(body: SegmentRequest, runtime: Runtime) -> None:
    if (body.rule is None) == (body.model is None):
        raise unprocessable(["body", "rule"], "a segment has exactly one of `rule` or `model`")
    if body.model is not None and body.cluster is None:
        raise unprocessable(["body", "cluster"], "a model-based segment names its cluster")
    for index, purpose in enumerate(body.required_purposes):
        if runtime.catalog.get(purpose) is None:
            raise unprocessable(["body", "required_purposes", index], f"unknown purpose {purpose!r}")
    if body.rule is not None:
        try:
            compile_rule(body.rule)
        except RuleError as exc:
            raise unprocessable(["body", "rule"], str(exc), position=exc.position) from exc


async def _validate_model(body: SegmentRequest, runtime: Runtime) -> None:
    """The model can assign, has the cluster, and the segment requires the model's purpose."""
    if body.model is None or body.cluster is None:
        return
    metadata = runtime.assigner.get(body.model)
    if metadata is None:  # perhaps trained a moment ago, before the watcher's next look
        await runtime.refresh_models()
        metadata = runtime.assigner.get(body.model)
    if metadata is None:
        raise unprocessable(["body", "model"], f"unknown model {body.model!r} (see GET /v1/models)")
    if body.cluster >= metadata.clusters:
        message = f"model {body.model!r} has clusters 0..{metadata.clusters - 1}"
        raise unprocessable(["body", "cluster"], message)
    if metadata.purpose not in body.required_purposes:
        message = f"a segment of model {body.model!r} must require {metadata.purpose!r}"
        raise unprocessable(["body", "required_purposes"], message)


@router.put("/{segment_id}", response_model=SegmentResponse)
async def put_segment(
    _: SegmentsWrite, segment_id: SegmentIdPath, body: SegmentRequest, runtime: Runtime
) -> SegmentResponse:
    """Create or replace a segment; its members are re-evaluated."""
    _validate(body, runtime)
    await _validate_model(body, runtime)
    definition = SegmentDefinition(
        event_id=new_event_id(),
        segment_id=segment_id,
        name=body.name,
        rule=body.rule,
        model=body.model,
        cluster=body.cluster,
        required_purposes=tuple(dict.fromkeys(body.required_purposes)),
        description=body.description,
        version=definitions(runtime).next_version(segment_id),
        updated_at=utcnow(),
    )
    return SegmentResponse.of(await definitions(runtime).save(definition))


@router.get("", response_model=SegmentList)
async def list_segments(_: SegmentsRead, runtime: Runtime) -> SegmentList:
    """Every live segment."""
    segments = sorted(definitions(runtime).registry.all(), key=lambda s: s.id)
    return SegmentList(segments=[SegmentResponse.of(s.definition) for s in segments])


def _existing(segment_id: str, runtime: Runtime) -> SegmentDefinition:
    segment = definitions(runtime).registry.get(segment_id)
    if segment is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no segment {segment_id!r}")
    return segment.definition


@router.get("/{segment_id}", response_model=SegmentResponse)
async def get_segment(_: SegmentsRead, segment_id: SegmentIdPath, runtime: Runtime) -> SegmentResponse:
    """One segment's definition."""
    return SegmentResponse.of(_existing(segment_id, runtime))


@router.delete("/{segment_id}", response_model=SegmentDeleted)
async def delete_segment(_: SegmentsWrite, segment_id: SegmentIdPath, runtime: Runtime) -> SegmentDeleted:
    """Delete a segment: every member leaves it (reason segment_deleted)."""
    _existing(segment_id, runtime)
    return SegmentDeleted(segment_id=segment_id, deleted=await definitions(runtime).delete(segment_id))


@router.get("/{segment_id}/members", response_model=MembersPage)
async def members(
    _: SegmentsRead,
    segment_id: SegmentIdPath,
    runtime: Runtime,
    cursor: Annotated[str, Query(pattern=r"^\d{1,20}$")] = "0",
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> MembersPage:
    """A page of live members (the cursor is a bucket: a page may hold some more or fewer than `limit`)."""
    if int(cursor) > MAX_CURSOR:
        message = f"a cursor is at most {MAX_CURSOR} (an unsigned 64-bit value)"
        raise unprocessable(["query", "cursor"], message)
    _existing(segment_id, runtime)
    page, next_cursor = await runtime.membership_reader.page(segment_id, int(cursor), limit)
    return MembersPage(members=page, next_cursor=str(next_cursor) if next_cursor else None)


@router.get("/{segment_id}/stats", response_model=SegmentStats)
async def stats(_: SegmentsRead, segment_id: SegmentIdPath, runtime: Runtime) -> SegmentStats:
    """Size, and breakdowns by profile country and tier with groups under K_ANONYMITY suppressed."""
    _existing(segment_id, runtime)
    counts: dict[str, Counter[str]] = {attr: Counter() for attr in BREAKDOWN_ATTRS}
    chunk: list[str] = []
    scanned = 0
    async for customer_id in runtime.membership_reader.members(segment_id):
        chunk.append(customer_id)
        scanned += 1
        if len(chunk) >= 500 or scanned >= STATS_SCAN_LIMIT:
            await _count(runtime, chunk, counts)
            chunk = []
        if scanned >= STATS_SCAN_LIMIT:
            break
    await _count(runtime, chunk, counts)
    k = runtime.settings.k_anonymity
    return SegmentStats(
        segment_id=segment_id,
        size=await runtime.membership_reader.size(segment_id),
        k_anonymity=k,
        breakdowns={attr: suppress_small_groups(c, k) for attr, c in counts.items()},
    )


async def _count(runtime: Runtime, chunk: list[str], counts: dict[str, Counter[str]]) -> None:
    if not chunk:
        return
    for profile in await runtime.membership_reader.profiles(chunk, BREAKDOWN_ATTRS):
        for attr in BREAKDOWN_ATTRS:
            counts[attr][str(profile.get(attr, "_unknown"))] += 1
