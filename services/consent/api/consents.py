"""`/v1/customers/{customer_id}/consents`: record a choice, read the effective state and the history."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Request

from services.consent.api.deps import ConsentRead, ConsentWrite, CustomerId, KnownPurpose, ServiceDep
from services.consent.api.schemas import (
    ConsentChoice,
    ConsentRecordOut,
    ConsentsOut,
    HistoryOut,
    PurposeStateOut,
    RecordedConsentOut,
)
from services.consent.domain.consent import ConsentEntry, InvalidConsentError, RecordConsent
from services.consent.domain.privacy import clip_user_agent, truncate_ip
from services.consent.service import ConsentService
from shared.http import unprocessable

router = APIRouter(prefix="/v1/customers/{customer_id}/consents", tags=["consents"])


def record_out(entry: ConsentEntry) -> ConsentRecordOut:
    fields = {k: v for k, v in vars(entry).items() if k != "publishes"}
    return ConsentRecordOut(**fields, published=entry.publishes)


@router.put("/{purpose}", response_model=RecordedConsentOut)
async def put_consent(
    _: ConsentWrite,
    customer_id: CustomerId,
    purpose: KnownPurpose,
    choice: ConsentChoice,
    request: Request,
    service: ServiceDep,
    sec_gpc: Annotated[str | None, Header(alias="Sec-GPC")] = None,
    user_agent: Annotated[str | None, Header()] = None,
) -> RecordedConsentOut:
    """Record a choice; `Sec-GPC: 1` also denies every sale/share purpose (reason gpc).

    Answers once the change is on consent.changes (at most CONSENT_PUBLISH_WAIT_S seconds; then
    `pending_publication` is true and the outbox publishes it when the broker is back)."""
    return await record_choice(customer_id, purpose, choice, request, service, sec_gpc, user_agent)


async def record_choice(
    customer_id: str,
    purpose: str,
    choice: ConsentChoice,
    request: Request,
    service: ConsentService,
    sec_gpc: str | None,
    user_agent: str | None,
) -> RecordedConsentOut:
    """The consent PUT's use case, for the route and the customer's own page."""
    command = RecordConsent(
        customer_id=customer_id,
        purpose=purpose,
        **choice.model_dump(),
        gpc=(sec_gpc or "").strip() == "1",
        user_agent=clip_user_agent(user_agent),
        ip_truncated=truncate_ip(request.client.host if request.client else None),
    )
    try:
        recorded = await service.record(command)
    except InvalidConsentError as exc:
        raise unprocessable(["body", exc.field], f"{exc.field}: {exc.message}") from exc
    assert recorded is not None, "only a request id (consent.requests) can make a duplicate"
    published = await service.wait_published(recorded)
    entries = recorded.entries
    main = next((e for e in entries if e.purpose == purpose), entries[0])
    others = [record_out(e) for e in entries if e is not main]
    return RecordedConsentOut(
        **record_out(main).model_dump(), also_recorded=others, pending_publication=not published
    )


@router.get("", response_model=ConsentsOut)
async def get_consents(_: ConsentRead, customer_id: CustomerId, service: ServiceDep) -> ConsentsOut:
    """The effective state of every catalog purpose; the catalog default where nothing was recorded."""
    states = await service.states(customer_id)
    purposes = {p: PurposeStateOut.model_validate(s.model_dump()) for p, s in states.items()}
    return ConsentsOut(customer_id=customer_id, purposes=purposes)


@router.get("/history", response_model=HistoryOut)
async def get_history(_: ConsentRead, customer_id: CustomerId, service: ServiceDep) -> HistoryOut:
    """Every recorded change of the customer's consent, oldest first."""
    rows = await service.history(customer_id)
    return HistoryOut(customer_id=customer_id, history=[ConsentRecordOut.model_validate(r) for r in rows])
