"""Keyed pseudonyms: HMAC-SHA256 of a customer id under the installation's PSEUDONYM_KEY."""

from __future__ import annotations

import hashlib
import hmac
import secrets

from shared.secrets import read_or_create_secret
from shared.settings import ServiceSettings

KEY_FILE = "pseudonym-key"
MIN_KEY_BYTES = 16


class PseudonymKeyError(ValueError):
    """PSEUDONYM_KEY is too weak to keep pseudonyms from being reversed by guessing."""


def pseudonymize(key: bytes, customer_id: str) -> str:
    """The stable, keyed pseudonym (64 hex chars) of a customer id."""
    return pseudonymize_bytes(key, customer_id.encode())


def pseudonymize_bytes(key: bytes, raw: bytes) -> str:
    """The pseudonym of a raw record key: the same as `pseudonymize` for a UTF-8 customer id."""
    return hmac.new(key, raw, hashlib.sha256).hexdigest()


def load_pseudonym_key(settings: ServiceSettings) -> bytes:
    """PSEUDONYM_KEY when set (hex, or text of 16+ bytes), else the key generated into DATA_DIR."""
    if settings.pseudonym_key is not None:
        raw = settings.pseudonym_key
        key = bytes.fromhex(raw) if _is_hex(raw) else raw.encode()
        if len(key) < MIN_KEY_BYTES:
            raise PseudonymKeyError(
                f"PSEUDONYM_KEY: needs at least {MIN_KEY_BYTES} bytes of secret, got {len(key)}"
            )
        return key
    stored = read_or_create_secret(settings.data_dir / KEY_FILE, lambda: secrets.token_hex(32).encode())
    return bytes.fromhex(stored.decode().strip())


def _is_hex(text: str) -> bool:
    try:
        bytes.fromhex(text)
    except ValueError:
        return False
    return len(text) % 2 == 0
