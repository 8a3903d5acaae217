"""The preference center: links (`/v1/.../preference-link`), the page and its calls, GPC policy."""

from __future__ import annotations

import asyncio
import logging
from datetime import date, datetime
from functools import cache, partial
from importlib import resources
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, HTTPException, Path, Request, Response
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, ConfigDict, Field

from services.consent.adapters.http_peers import HttpPeerExport, PeerUnavailableError
from services.consent.api.consents import record_choice
from services.consent.api.deps import (
    ConsentWrite,
    CustomerId,
    KnownPurpose,
    PeersDep,
    PreferencesDep,
    RecentChoicesDep,
    ServiceDep,
)
from services.consent.api.schemas import ConsentChoice, JurisdictionName, RecordedConsentOut, Status
from services.consent.preference.access import PreferenceAccess
from services.consent.preference.feelings import ANSWERS, DataUseFeelings
from services.consent.preference.links import LinkClaims, PreferenceLinkError
from services.consent.preference.messages import language
from services.consent.preference.page import purpose_title, render_page, render_refusal, render_segments
from services.consent.preference.reach_page import render_choices
from services.consent.preference.zero_party import preference_uses
from services.consent.preference.zero_party_page import render_feeling, render_preferences
from services.consent.service import ConsentService
from services.consent.settings import ConsentSettings
from shared.events import PREFERENCE_CENTER_SOURCE, utcnow

log = logging.getLogger(__name__)
SOURCE = PREFERENCE_CENTER_SOURCE
GPC_POLICY_UPDATED = date(2026, 12, 1)

links = APIRouter(prefix="/v1/customers/{customer_id}/preference-link", tags=["preference center"])
page = APIRouter(prefix="/preferences", tags=["preference center"])
well_known = APIRouter(tags=["preference center"])


class PreferenceLinkRequest(BaseModel):
    """The body of `POST /v1/customers/{customer_id}/preference-link`: what the page's choices record."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"jurisdiction": "GDPR", "policy_version": "2026-03"}]},
    )

    jurisdiction: JurisdictionName
    policy_version: str = Field(min_length=1, max_length=256, examples=["2026-03"])


class PreferenceLinkOut(BaseModel):
    url: str = Field(description="the page; the token in it names the customer only to this service")
    expires_at: datetime


class PageChoice(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: Status
    gpc: bool = Field(False, description="the page's script read navigator.globalPrivacyControl")


class PreferenceChangeOut(BaseModel):
    purpose: str
    status: Status = Field(description="what was recorded (denied for a sale/share purpose under GPC)")
    gpc_denied: list[str] = Field(description="sale/share purposes this request denied for GPC")
    pending_publication: bool = Field(description="true when the change is not yet on the broker")
    notice_version: int | None = Field(None, description="the notice version the choice was made under")


class GpcOut(BaseModel):
    gpc_denied: list[str]


class GpcPolicyOut(BaseModel):
    """`/.well-known/gpc.json` (GPC specification, section 3.3)."""

    gpc: bool
    lastUpdate: date  # noqa: N815 (the specification's name)


async def get_access(request: Request) -> PreferenceAccess:
    access: PreferenceAccess = request.app.state.runtime.preference_access
    return access


AccessDep = Annotated[PreferenceAccess, Depends(get_access)]
Token = Annotated[str, Path(min_length=1, max_length=1024, description="the link's opaque token")]


async def link_claims(token: Token, access: AccessDep) -> LinkClaims:
    try:
        return await access.open(token, utcnow())
    except PreferenceLinkError as exc:
        log.info("refused a preference link", extra={"reason": exc.reason})
        raise HTTPException(403, f"preference link {exc.reason}: ask for a new link") from exc


Claims = Annotated[LinkClaims, Depends(link_claims)]


@links.post("", response_model=PreferenceLinkOut)
async def create_link(
    _: ConsentWrite, customer_id: CustomerId, body: PreferenceLinkRequest, request: Request, access: AccessDep
) -> PreferenceLinkOut:
    """A signed link to the customer's preference center, valid CONSENT_PREFERENCE_LINK_TTL_S seconds."""
    token, expires = await access.issue(customer_id, body.jurisdiction, body.policy_version, utcnow())
    settings: ConsentSettings = request.app.state.runtime.settings
    base = (settings.consent_preference_center_url or str(request.base_url)).rstrip("/")
    return PreferenceLinkOut(url=f"{base}/preferences/{token}", expires_at=expires)


@links.delete("", status_code=204, response_class=Response)
async def revoke_links(_: ConsentWrite, customer_id: CustomerId, access: AccessDep) -> None:
    """Revoke every preference link issued to the customer so far."""
    await access.revoke(customer_id)


@page.get("/static/preferences.js", include_in_schema=False)
async def script() -> Response:
    return Response(_script(), media_type="text/javascript")


@page.get("/{token}", response_class=HTMLResponse)
async def preference_page(
    token: Token,
    request: Request,
    access: AccessDep,
    service: ServiceDep,
    peers: PeersDep,
    preferences: PreferencesDep,
    recent: RecentChoicesDep,
    sec_gpc: Annotated[str | None, Header(alias="Sec-GPC")] = None,
    accept_language: Annotated[str | None, Header()] = None,
) -> HTMLResponse:
    """The customer's preference center; `Sec-GPC: 1` records the GPC denials first."""
    lang = language(accept_language)
    try:
        claims = await access.open(token, utcnow())
    except PreferenceLinkError as exc:
        log.info("refused a preference link", extra={"reason": exc.reason})
        return HTMLResponse(render_refusal(lang, exc.reason), status_code=403)
    gpc = _gpc_header(sec_gpc)
    if gpc:
        await _record_gpc(claims, request, service)
    feelings: DataUseFeelings = request.app.state.runtime.feelings
    states, segments, stated, uses, choices, answered = await asyncio.gather(
        service.states(claims.customer_id),
        _segments(peers, claims),
        preferences.stated(claims.customer_id),
        preference_uses(peers, preferences.catalog.preferences),
        recent.recent(claims.customer_id),
        feelings.answered(claims.customer_id),
    )
    html = render_page(
        lang,
        service.policy.catalog,
        states,
        f"/preferences/{token}",
        gpc,
        segments,
        render_preferences(lang, preferences.catalog, stated, uses),
        render_choices(lang, choices, partial(purpose_title, lang)),
        render_feeling(lang, ANSWERS, answered),
        currency=_currency(request),
    )
    return HTMLResponse(html, headers={"Cache-Control": "no-store"})


class LiveOut(BaseModel):
    """What the script puts in place after a click, until the change has reached every service."""

    segments: str = Field(description="the segments section, as HTML")
    choices: str = Field(description="the recent choices section, as HTML")
    settled: bool = Field(description="every recent choice arrived and no segment awaits its eviction")


@page.get("/{token}/live", response_model=LiveOut)
async def live(
    claims: Claims,
    service: ServiceDep,
    peers: PeersDep,
    recent: RecentChoicesDep,
    request: Request,
    accept_language: Annotated[str | None, Header()] = None,
) -> LiveOut:
    """The page's segments and recent choices as they are now (fetched by the script after a click)."""
    lang = language(accept_language)
    states, segments, choices = await asyncio.gather(
        service.states(claims.customer_id), _segments(peers, claims), recent.recent(claims.customer_id)
    )
    # A segment whose purpose is withdrawn is still listed until the segmenter has evicted it.
    effective = {p for p, state in states.items() if state.effective}
    evicting = any(not set(s.get("required_purposes", [])) <= effective for s in segments or [])
    return LiveOut(
        segments=render_segments(lang, segments, _currency(request)),
        choices=render_choices(lang, choices, partial(purpose_title, lang)),
        settled=all(c.settled for c in choices) and not evicting,
    )


@page.put("/{token}/consents/{purpose}", response_model=PreferenceChangeOut)
async def change_choice(
    claims: Claims,
    purpose: KnownPurpose,
    choice: PageChoice,
    request: Request,
    service: ServiceDep,
    sec_gpc: Annotated[str | None, Header(alias="Sec-GPC")] = None,
    user_agent: Annotated[str | None, Header()] = None,
) -> PreferenceChangeOut:
    """Record one click; answers once it is published (as the consent PUT does)."""
    gpc = "1" if choice.gpc or _gpc_header(sec_gpc) else None
    # The page shows each purpose's current notice, so a click is a choice made under it.
    notice = service.policy.catalog.get(purpose)
    body = _choice(claims, choice.status, notice.notice_version if notice else None)
    recorded = await record_choice(claims.customer_id, purpose, body, request, service, gpc, user_agent)
    return PreferenceChangeOut(
        purpose=purpose,
        status=recorded.status,
        gpc_denied=_gpc_denied(recorded),
        pending_publication=recorded.pending_publication,
        notice_version=recorded.notice_version,
    )


@page.post("/{token}/gpc", response_model=GpcOut)
async def record_gpc(claims: Claims, request: Request, service: ServiceDep) -> GpcOut:
    """The script read navigator.globalPrivacyControl: deny the sale/share purposes (reason gpc)."""
    return GpcOut(gpc_denied=await _record_gpc(claims, request, service))


@well_known.get("/.well-known/gpc.json", response_model=GpcPolicyOut)
async def gpc_policy() -> GpcPolicyOut:
    """This site honours Global Privacy Control."""
    return GpcPolicyOut(gpc=True, lastUpdate=GPC_POLICY_UPDATED)


async def _segments(peers: HttpPeerExport, claims: LinkClaims) -> list[dict[str, Any]] | None:
    """The customer's segments and why, or None (the page says so) when the segmenter is unreachable."""
    try:
        return await peers.explained_segments(claims.customer_id)
    except PeerUnavailableError as exc:
        log.warning("no segments for the preference center", extra={"error": str(exc)})
        return None


async def _record_gpc(claims: LinkClaims, request: Request, service: ConsentService) -> list[str]:
    """Deny every sale/share purpose for GPC unless that is already the latest record of each."""
    sale_or_share = service.policy.catalog.sale_or_share_ids
    if not sale_or_share or await _gpc_already_recorded(service, claims.customer_id, sale_or_share):
        return list(sale_or_share)
    # The consent PUT under Sec-GPC records exactly the GPC rows for a sale/share purpose.
    recorded = await record_choice(
        claims.customer_id, sale_or_share[0], _choice(claims, "denied"), request, service, "1", None
    )
    return _gpc_denied(recorded)


async def _gpc_already_recorded(service: ConsentService, customer_id: str, purposes: tuple[str, ...]) -> bool:
    latest = {row["purpose"]: row for row in await service.history(customer_id)}  # oldest first
    return all(p in latest and latest[p]["reason"] == "gpc" for p in purposes)


def _currency(request: Request) -> str:
    settings: ConsentSettings = request.app.state.runtime.settings
    return settings.consent_shop_currency


def _choice(claims: LinkClaims, status: Status, notice_version: int | None = None) -> ConsentChoice:
    return ConsentChoice(
        status=status,
        source=SOURCE,
        jurisdiction=claims.jurisdiction,
        policy_version=claims.policy_version,
        notice_version=notice_version,
    )


def _gpc_denied(recorded: RecordedConsentOut) -> list[str]:
    rows = [recorded, *recorded.also_recorded]
    return [row.purpose for row in rows if row.reason == "gpc"]


def _gpc_header(value: str | None) -> bool:
    return (value or "").strip() == "1"


@cache
def _script() -> str:
    return resources.files("services.consent.preference").joinpath("static/preferences.js").read_text()
