"""Bearer tokens with scopes, as a FastAPI dependency (contract: Auth)."""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from fastapi import Depends, HTTPException, Request, params, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from shared.secrets import read_or_create_secret
from shared.settings import ServiceSettings

SCOPES = frozenset(
    {
        "consent:read",
        "consent:write",
        "segments:read",
        "segments:write",
        "audit:read",
        "destinations:read",
        "destinations:write",
        "propagation:read",
        "dsr",
        "*",
    }
)
# What INTERNAL_TOKEN needs, and all it should get: the consent service's export and erasure
# receipt read the segmenter's memberships and holdings, the audit trail with its proofs and
# where delivery sent the customer (`propagation:read`, not `dsr`, which would let the token
# export or erase anyone); the audit service's RoPA lists the destinations.
INTERNAL_SCOPES = frozenset({"segments:read", "audit:read", "propagation:read", "destinations:read"})
ADMIN_TOKEN_FILE = "admin-token"


class AuthConfigError(ValueError):
    """AUTH_TOKENS does not parse; the message names the bad entry without the token."""


@dataclass(frozen=True)
class Principal:
    """Who is calling, by the index of their token entry (never the token itself)."""

    name: str
    scopes: frozenset[str]

    def allows(self, scope: str) -> bool:
        return "*" in self.scopes or scope in self.scopes


class TokenRegistry:
    """The accepted tokens; lookups compare in constant time so timing leaks no token."""

    def __init__(self, entries: dict[str, frozenset[str]]) -> None:
        self._entries = [(token.encode(), scopes) for token, scopes in entries.items()]

    @classmethod
    def parse(cls, spec: str) -> TokenRegistry:
        entries: dict[str, frozenset[str]] = {}
        for number, entry in enumerate(filter(None, (e.strip() for e in spec.split(","))), 1):
            token, sep, scope_text = entry.partition("=")
            scopes = frozenset(s.strip() for s in scope_text.split("|") if s.strip())
            if not sep or len(token.strip()) < 8 or not scopes:
                raise AuthConfigError(
                    f"AUTH_TOKENS: entry {number} must be token=scope|scope (token of 8+ chars)"
                )
            unknown = scopes - SCOPES
            if unknown:
                raise AuthConfigError(f"AUTH_TOKENS: entry {number} has unknown scopes {sorted(unknown)}")
            entries[token.strip()] = scopes
        return cls(entries)

    def lookup(self, token: str) -> Principal | None:
        presented = token.encode()
        found: Principal | None = None
        for index, (candidate, scopes) in enumerate(self._entries):
            if hmac.compare_digest(candidate, presented):
                found = Principal(f"token-{index + 1}", scopes)
        return found


def admin_token_path(settings: ServiceSettings) -> Path:
    return settings.data_dir / ADMIN_TOKEN_FILE


def ensure_admin_token(settings: ServiceSettings) -> str:
    """The generated admin token (scope `*`) used when AUTH_TOKENS is unset."""
    raw = read_or_create_secret(admin_token_path(settings), lambda: secrets.token_urlsafe(32).encode())
    return raw.decode().strip()


def load_tokens(settings: ServiceSettings) -> TokenRegistry:
    if settings.auth_tokens:
        return TokenRegistry.parse(settings.auth_tokens)
    return TokenRegistry({ensure_admin_token(settings): frozenset({"*"})})


_bearer = HTTPBearer(auto_error=False, description="A token from AUTH_TOKENS")


def require_scope(scope: str, *alternatives: str) -> params.Depends:
    """The one way a route asks for a scope (401 unknown token, 403 lacking): each service's
    `api/deps.py` names `Annotated[Principal, require_scope(...)]` once per scope
    (`SegmentsRead`, ...), and a route takes it as its first dependency, so 401 and 403 come
    before anything another dependency answers. `alternatives` admit the caller as well."""

    async def check(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> Principal:
        registry: TokenRegistry = request.app.state.tokens
        principal = registry.lookup(credentials.credentials) if credentials else None
        if principal is None:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                "missing or unknown bearer token",
                headers={"WWW-Authenticate": "Bearer"},
            )
        if not any(principal.allows(granted) for granted in (scope, *alternatives)):
            raise HTTPException(status.HTTP_403_FORBIDDEN, f"this token lacks the scope {scope!r}")
        return principal

    # The class, not FastAPI's `Depends()` helper (typed `Any`), so callers get the type.
    return params.Depends(check)


def internal_token(settings: ServiceSettings) -> str:
    """The token this service presents to the others (INTERNAL_TOKEN, else the admin token).

    When AUTH_TOKENS lists it, it must grant INTERNAL_SCOPES (else every export fails with 403)."""
    if settings.internal_token:
        listed = TokenRegistry.parse(settings.auth_tokens or "").lookup(settings.internal_token)
        missing = sorted(scope for scope in INTERNAL_SCOPES if listed and not listed.allows(scope))
        if missing:
            raise AuthConfigError(f"INTERNAL_TOKEN: its entry in AUTH_TOKENS lacks the scopes {missing}")
        return settings.internal_token
    if settings.auth_tokens:
        raise AuthConfigError("INTERNAL_TOKEN: required when AUTH_TOKENS is set (services call each other)")
    return ensure_admin_token(settings)
