"""`GET /v1/audit`: the ledger, or one customer's pseudonymous trail, in ledger order."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Query

from services.audit.api.deps import MAX_SEQ, AuditRead, Runtime
from services.audit.api.schemas import AuditRecordOut, RecordPage
from shared.events import CUSTOMER_ID_PATTERN
from shared.pseudonym import pseudonymize

router = APIRouter(prefix="/v1/audit", tags=["audit"])


@router.get("", response_model=RecordPage)
async def list_records(
    _: AuditRead,
    runtime: Runtime,
    customer_id: Annotated[str | None, Query(pattern=CUSTOMER_ID_PATTERN)] = None,
    kind: Annotated[str | None, Query(pattern=r"^[a-z_]{1,64}$")] = None,
    after_seq: Annotated[int, Query(ge=-1, le=MAX_SEQ)] = -1,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> RecordPage:
    """Records after `after_seq`, optionally one customer's (pseudonymized here) or one kind's."""
    subject = None if customer_id is None else pseudonymize(runtime.pseudonym_key, customer_id)
    found = await asyncio.to_thread(runtime.ledger.find, subject, kind, after_seq, limit)
    records = [AuditRecordOut(**record.to_dict()) for record in found]
    next_after = records[-1].seq if len(records) == limit else None
    return RecordPage(records=records, next_after_seq=next_after)
