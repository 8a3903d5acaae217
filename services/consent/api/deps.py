"""Annotated dependencies of the consent routes: scopes, the service, validated path parameters."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Request

from services.consent.adapters.http_peers import HttpPeerExport
from services.consent.preference.reach import RecentChoices
from services.consent.preference.zero_party import StatedPreferences
from services.consent.receipt import ErasureReceipts
from services.consent.service import ConsentService
from shared.auth import Principal, require_scope
from shared.events import CUSTOMER_ID_PATTERN, PURPOSE_ID_PATTERN
from shared.http import unprocessable

# Each route's first parameter (`_: ConsentRead`), as in every service.
ConsentRead = Annotated[Principal, require_scope("consent:read")]
ConsentWrite = Annotated[Principal, require_scope("consent:write")]
Dsr = Annotated[Principal, require_scope("dsr")]


async def get_service(request: Request) -> ConsentService:
    service: ConsentService = request.app.state.runtime.service
    return service


async def get_peers(request: Request) -> HttpPeerExport:
    peers: HttpPeerExport = request.app.state.runtime.peers
    return peers


async def get_receipts(request: Request) -> ErasureReceipts:
    receipts: ErasureReceipts = request.app.state.runtime.receipts
    return receipts


async def get_preferences(request: Request) -> StatedPreferences:
    preferences: StatedPreferences = request.app.state.runtime.preferences
    return preferences


async def get_recent_choices(request: Request) -> RecentChoices:
    recent: RecentChoices = request.app.state.runtime.recent_choices
    return recent


ServiceDep = Annotated[ConsentService, Depends(get_service)]
RecentChoicesDep = Annotated[RecentChoices, Depends(get_recent_choices)]
PreferencesDep = Annotated[StatedPreferences, Depends(get_preferences)]
ReceiptsDep = Annotated[ErasureReceipts, Depends(get_receipts)]
PeersDep = Annotated[HttpPeerExport, Depends(get_peers)]
CustomerId = Annotated[
    str, Path(pattern=CUSTOMER_ID_PATTERN, description="the customer's id", examples=["c-1042"])
]


# Dependencies are async on purpose: FastAPI runs a plain `def` dependency in a worker thread,
# three thread hops per request for what are dictionary lookups.
async def known_purpose(
    purpose: Annotated[str, Path(pattern=PURPOSE_ID_PATTERN, examples=["marketing_email"])],
    service: ServiceDep,
) -> str:
    if service.policy.catalog.get(purpose) is None:
        known = ", ".join(service.policy.catalog.ids)
        raise unprocessable(["path", "purpose"], f"purpose: unknown purpose {purpose!r}; known: {known}")
    return purpose


KnownPurpose = Annotated[str, Depends(known_purpose)]
