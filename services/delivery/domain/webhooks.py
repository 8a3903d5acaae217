"""A webhook's subject, body, signature and retry delays (no I/O)."""

from __future__ import annotations

import hashlib
import hmac
import json
import random
from typing import Any

from services.delivery.domain.destinations import Destination
from shared.pseudonym import pseudonymize

SIGNATURE_HEADER = "Segwarden-Signature"
GONE = "HTTP 410"  # the receiver's word that the endpoint is gone: the destination pauses
CIRCUIT_OPEN = "circuit open"  # the error of a webhook held back by its endpoint's circuit


def destination_key(installation_key: bytes, destination_id: str) -> bytes:
    """A key per destination, derived from PSEUDONYM_KEY: two partners' pseudonyms never join."""
    return hmac.new(
        installation_key, b"segwarden-destination\n" + destination_id.encode(), hashlib.sha256
    ).digest()


def subject(installation_key: bytes, destination: Destination, customer_id: str) -> str:
    """What the destination knows the customer by: its own pseudonym, or the id if agreed."""
    if destination.identifier == "customer_id":
        return customer_id
    return pseudonymize(destination_key(installation_key, destination.destination_id), customer_id)


def body(delivery: dict[str, Any], destination: Destination, subject_id: str) -> bytes:
    payload = {
        "id": delivery["idempotency_key"],
        "destination_id": destination.destination_id,
        "segment_id": delivery["segment_id"],
        "action": delivery["action"],
        "reason": delivery["reason"],
        "subject": subject_id,
        "subject_type": destination.identifier,
        "at": delivery["at"],
    }
    return json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()


def signature(secret: str, timestamp: int, payload: bytes) -> str:
    """`t=<unix>,v1=<hex>`: HMAC-SHA256 over `<t>.<body>`, as Stripe signs its webhooks."""
    signed = str(timestamp).encode() + b"." + payload
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def retry_delay(failures: int, initial: float, cap: float, rng: random.Random) -> float:
    """Exponential backoff with equal jitter: between half and all of min(cap, initial * 2^(n-1))."""
    ceiling = min(cap, initial * 2 ** min(max(0, failures - 1), 60))
    return ceiling / 2 + rng.uniform(0, ceiling / 2)
