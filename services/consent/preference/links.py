"""Preference links: opaque, signed, expiring tokens bound to one customer (no I/O but the key file).

A token is a Fernet token (AES-128-CBC, then HMAC-SHA256 over it) of the customer id, the link's
revocation generation, jurisdiction, policy version and expiry. It is encrypted rather than a
signed plain payload so the URL shows no customer id, and stateless rather than a server-side
lookup so issuing a link writes nothing: the only state is one generation counter per customer.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Literal

from cryptography.fernet import Fernet, InvalidToken

from services.consent.settings import ConsentSettings
from shared.events import Jurisdiction
from shared.secrets import read_or_create_secret

KEY_FILE = "preference-link-key"
Refusal = Literal["invalid", "expired", "revoked"]


class PreferenceLinkError(ValueError):
    """A token the preference center refuses; `reason` says which refusal page to show."""

    def __init__(self, reason: Refusal) -> None:
        super().__init__(f"preference link {reason}")
        self.reason: Refusal = reason


@dataclass(frozen=True)
class LinkClaims:
    customer_id: str
    generation: int
    jurisdiction: Jurisdiction
    policy_version: str
    expires_at: int  # Unix seconds

    @property
    def expires(self) -> datetime:
        return datetime.fromtimestamp(self.expires_at, UTC)


class PreferenceLinks:
    """Issues and opens tokens under one key; the caller checks the generation (it is stored)."""

    def __init__(self, key: bytes) -> None:
        self._fernet = Fernet(key)

    def issue(self, claims: LinkClaims) -> str:
        return self._fernet.encrypt(json.dumps(asdict(claims)).encode()).decode()

    def open(self, token: str, now: datetime) -> LinkClaims:
        """The claims of a token that is intact and unexpired; PreferenceLinkError otherwise."""
        try:
            claims = LinkClaims(**json.loads(self._fernet.decrypt(token.encode())))
        except (InvalidToken, ValueError, TypeError) as exc:
            raise PreferenceLinkError("invalid") from exc
        if claims.expires_at <= now.timestamp():
            raise PreferenceLinkError("expired")
        return claims


def load_link_key(settings: ConsentSettings) -> bytes:
    """CONSENT_PREFERENCE_LINK_KEY when set (replicas must share it), else the key generated into DATA_DIR."""
    if settings.consent_preference_link_key is not None:
        return settings.consent_preference_link_key.get_secret_value().encode()
    return read_or_create_secret(settings.data_dir / KEY_FILE, Fernet.generate_key).strip()
