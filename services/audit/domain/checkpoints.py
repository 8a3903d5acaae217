"""Signed tree heads: what a checkpoint holds and the exact bytes its two signatures cover.

Pure: standard library only. The key that signs them is an adapter (`adapters/ed25519.py`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Checkpoint:
    """A signed tree head (contract: `GET /v1/audit/checkpoint`)."""

    tree_size: int
    root: str
    timestamp: str
    signature: str
    head: str
    head_signature: str


class Verifier(Protocol):
    def verifies(self, message: bytes, signature: str) -> bool: ...


class Signer(Verifier, Protocol):
    public_key: str

    def sign(self, message: bytes) -> str: ...


def checkpoint_text(tree_size: int, root: str, timestamp: str) -> bytes:
    """The exact bytes a checkpoint signature covers (contract: Audit service)."""
    return f"segwarden-audit\n{tree_size}\n{root}\n{timestamp}\n".encode()


def head_text(tree_size: int, head: str) -> bytes:
    """The bytes a checkpoint's head signature covers: the hash of record tree_size - 1."""
    return f"segwarden-audit-head\n{tree_size}\n{head}\n".encode()
