"""The customer's zero-party preferences on the preference center: state one (validated against the
preference catalog), remove it with one click; each answer says where the preference is used."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path
from pydantic import BaseModel, ConfigDict, Field

from services.consent.adapters.http_peers import HttpPeerExport
from services.consent.api.deps import PeersDep, PreferencesDep
from services.consent.api.preferences import Claims
from services.consent.preference.zero_party import Value, preference_uses
from shared.catalog import PreferenceChoiceError, PreferenceKey
from shared.http import unprocessable

router = APIRouter(prefix="/preferences/{token}/preferences", tags=["preference center"])


async def known_key(
    key: Annotated[str, Path(pattern=r"^[a-z][a-z0-9_]{0,47}$", examples=["interests"])],
    preferences: PreferencesDep,
) -> PreferenceKey:
    found = preferences.catalog.get(key)
    if found is None:
        known = ", ".join(preferences.catalog.ids)
        raise unprocessable(["path", "key"], f"key: unknown preference {key!r}; known: {known}")
    return found


KnownKey = Annotated[PreferenceKey, Depends(known_key)]


class StatedPreference(BaseModel):
    """What the page sends: one value, or a list for a preference with several."""

    model_config = ConfigDict(extra="forbid")

    value: str | list[str] = Field(examples=[["books", "music"], "monthly"])


class StatedPreferenceOut(BaseModel):
    key: str
    value: Value | None = Field(description="as stored; null once removed")
    feature: str = Field(description="the rule feature it is, e.g. profile.pref.interests")
    pending_publication: bool = Field(description="true when the change is not yet on the broker")
    used_by: list[str] | None = Field(description="segments whose rule reads it; null: not known now")


@router.put("/{key}", response_model=StatedPreferenceOut)
async def state_preference(
    claims: Claims, key: KnownKey, body: StatedPreference, preferences: PreferencesDep, peers: PeersDep
) -> StatedPreferenceOut:
    """State a preference; answers once its profile_update is published (as a consent PUT does)."""
    try:
        value = key.check(body.value)
    except PreferenceChoiceError as exc:
        raise unprocessable(["body", "value"], f"value: {exc}") from exc
    published = await preferences.change(claims.customer_id, key, value)
    return await _answer(key, value, published, peers)


@router.delete("/{key}", response_model=StatedPreferenceOut)
async def remove_preference(
    claims: Claims, key: KnownKey, preferences: PreferencesDep, peers: PeersDep
) -> StatedPreferenceOut:
    """Remove a preference: a profile_update with null, so segments reading it are left."""
    published = await preferences.change(claims.customer_id, key, None)
    return await _answer(key, None, published, peers)


async def _answer(
    key: PreferenceKey, value: Value | None, published: bool, peers: HttpPeerExport
) -> StatedPreferenceOut:
    uses = await preference_uses(peers, [key])
    return StatedPreferenceOut(
        key=key.id,
        value=value,
        feature=key.feature,
        pending_publication=not published,
        used_by=None if uses is None else uses[key.id],
    )
