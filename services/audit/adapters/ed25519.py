"""`Ed25519Signer`: the ledger's signing key, created once under DATA_DIR and kept across restarts."""

from __future__ import annotations

import base64
import secrets
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from shared.secrets import read_or_create_secret

KEY_FILE = "audit-signing-key"


class Ed25519Verifier:
    """Checks checkpoint signatures with the ledger's public key (base64 of the raw 32 bytes)."""

    def __init__(self, public_key: str) -> None:
        self.public_key = public_key

    def verifies(self, message: bytes, signature: str) -> bool:
        public = Ed25519PublicKey.from_public_bytes(base64.b64decode(self.public_key))
        try:
            public.verify(base64.b64decode(signature), message)
        except (InvalidSignature, ValueError):  # ValueError: not base64, or the wrong length
            return False
        return True


class Ed25519Signer(Ed25519Verifier):
    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        raw = private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        super().__init__(base64.b64encode(raw).decode())
        self._key = private_key

    @classmethod
    def from_data_dir(cls, data_dir: Path) -> Ed25519Signer:
        """The key in DATA_DIR, created there by the first process that needs it."""
        seed = read_or_create_secret(data_dir / KEY_FILE, lambda: secrets.token_hex(32).encode())
        return cls(Ed25519PrivateKey.from_private_bytes(bytes.fromhex(seed.decode().strip())))

    @classmethod
    def existing(cls, data_dir: Path) -> Ed25519Signer | None:
        """The key in DATA_DIR if there is one (a verifier never creates a key)."""
        path = data_dir / KEY_FILE
        return cls.from_data_dir(data_dir) if path.exists() else None

    def sign(self, message: bytes) -> str:
        return base64.b64encode(self._key.sign(message)).decode()
