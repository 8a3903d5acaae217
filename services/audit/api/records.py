"""`GET /v1/audit`: the ledger, or one customer's pseudonymous trail, in ledger order."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Query

from services.audit.api.deps import MAX_SEQ, AuditRead, Runtime
from services.audit.api.schemas import AuditRecordOut, RecordPage
from services.audit.domain.payloads import record_event_id
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
    event_id: Annotated[str | None, Query(min_length=1, max_length=128)] = None,  # as EventId
) -> RecordPage:
    """Records after `after_seq`, optionally one customer's (pseudonymized here) or one kind's, or
    the one of a source event: `event_id` is the event's own id, kept in the ledger as it is or as
    its pseudonym (`record_event_id`, with the customer it names), so the caller need not know which."""
    key = runtime.pseudonym_key
    subject = None if customer_id is None else pseudonymize(key, customer_id)
    stored = None if event_id is None else record_event_id(key, event_id, customer_id)
    found = await asyncio.to_thread(runtime.ledger.find, subject, kind, after_seq, limit, stored)
    records = [AuditRecordOut(**record.to_dict()) for record in found]
    next_after = records[-1].seq if len(records) == limit else None
    return RecordPage(records=records, next_after_seq=next_after)
