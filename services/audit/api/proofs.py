"""Signed checkpoints, inclusion proofs and consistency proofs (RFC 9162)."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query, status

from services.audit.api.deps import MAX_SEQ, AuditRead, Heavy, Runtime
from services.audit.api.schemas import CheckpointOut, ConsistencyProofOut, InclusionProofOut
from services.audit.bootstrap import AuditRuntime
from services.audit.domain import merkle
from services.audit.domain.checkpoints import Checkpoint
from shared.http import unprocessable

router = APIRouter(prefix="/v1/audit", tags=["audit"])


def _out(runtime: AuditRuntime, checkpoint: Checkpoint) -> CheckpointOut:
    return CheckpointOut(**vars(checkpoint), public_key=runtime.signer.public_key)


@router.get("/checkpoint", response_model=CheckpointOut)
async def latest_checkpoint(_: AuditRead, runtime: Runtime) -> CheckpointOut:
    """The latest signed tree head (one is signed now if none exists yet)."""
    latest = await asyncio.to_thread(runtime.checkpoints.latest)
    if latest is None:
        latest = await asyncio.to_thread(runtime.checkpointer.checkpoint)
    return _out(runtime, latest)


@router.post("/checkpoint", response_model=CheckpointOut)
async def sign_checkpoint(_: AuditRead, runtime: Runtime) -> CheckpointOut:
    """Sign a tree head over the whole ledger now, unless the latest one already covers it."""
    return _out(runtime, await asyncio.to_thread(runtime.checkpointer.checkpoint))


def _within_ledger(runtime: AuditRuntime, tree_size: int) -> None:
    length, _ = runtime.ledger.head()
    if tree_size > length:
        raise unprocessable(["query", "tree_size"], f"tree_size: the ledger holds only {length} records")


@router.get("/records/{seq}/proof", response_model=InclusionProofOut)
async def inclusion_proof(
    _: AuditRead,
    __: Heavy,
    runtime: Runtime,
    seq: Annotated[int, Path(ge=0, le=MAX_SEQ)],
    tree_size: Annotated[int | None, Query(ge=1, le=MAX_SEQ)] = None,
) -> InclusionProofOut:
    """An RFC 9162 inclusion proof of record `seq` (tree_size defaults to the latest checkpoint's)."""

    def prove() -> InclusionProofOut:
        size = tree_size if tree_size is not None else runtime.checkpointer.checkpoint().tree_size
        if seq >= size:
            if seq >= runtime.ledger.head()[0]:
                raise HTTPException(status.HTTP_404_NOT_FOUND, f"seq: no record {seq} in the ledger")
            raise unprocessable(["query", "tree_size"], "tree_size: must be greater than seq")
        _within_ledger(runtime, size)
        hashes = runtime.ledger.subtrees(merkle.inclusion_parts(seq, size))
        root, path = merkle.inclusion_proof(seq, size, hashes)
        return InclusionProofOut(seq=seq, tree_size=size, root=root.hex(), path=[node.hex() for node in path])

    return await asyncio.to_thread(prove)


@router.get("/consistency", response_model=ConsistencyProofOut)
async def consistency_proof(
    _: AuditRead,
    __: Heavy,
    runtime: Runtime,
    first: Annotated[int, Query(ge=1, le=MAX_SEQ)],
    second: Annotated[int, Query(ge=1, le=MAX_SEQ)],
) -> ConsistencyProofOut:
    """An RFC 9162 consistency proof that the tree of `first` records is a prefix of the one of `second`."""
    if first > second:
        raise unprocessable(["query", "first"], "first: must not exceed second")

    def prove() -> ConsistencyProofOut:
        _within_ledger(runtime, second)
        hashes = runtime.ledger.subtrees(merkle.consistency_parts(first, second))
        path, first_root, second_root = merkle.consistency_proof(first, second, hashes)
        return ConsistencyProofOut(
            first=first,
            second=second,
            first_root=first_root.hex(),
            second_root=second_root.hex(),
            path=[node.hex() for node in path],
        )

    return await asyncio.to_thread(prove)
