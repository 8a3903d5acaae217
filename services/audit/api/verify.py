"""`GET /v1/audit/verify`: recompute the whole chain and every checkpoint's root."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter

from services.audit.api.deps import AuditRead, Heavy, Runtime
from services.audit.api.schemas import VerifyOut
from services.audit.domain.verify import verify_ledger
from services.audit.metrics import VERIFY_FAILURES, VERIFY_RUNS

router = APIRouter(prefix="/v1/audit", tags=["audit"])


@router.get("/verify", response_model=VerifyOut)
async def verify(_: AuditRead, __: Heavy, runtime: Runtime, merkle: bool = False) -> VerifyOut:
    """Verify the ledger from seq 0, naming the first bad seq; `merkle=true` recomputes roots too."""
    checkpoints = await asyncio.to_thread(runtime.checkpoints.all)
    workers = runtime.settings.verify_workers
    report = await asyncio.to_thread(
        verify_ledger, runtime.ledger, checkpoints, runtime.signer, None, merkle, workers
    )
    VERIFY_RUNS.inc()
    if not report.ok:
        VERIFY_FAILURES.inc()
    return VerifyOut(**vars(report))
