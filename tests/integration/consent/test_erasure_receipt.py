"""The erasure receipt against real services: erased everywhere, with a ledger proof anyone can check."""

from __future__ import annotations

import base64
import hashlib
from datetime import datetime, timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from kafka import KafkaProducer

from services.segmenter.adapters.redis_keys import KeyLayout
from shared.events import CustomerEvent, new_event_id, utcnow
from tests.conftest import bearer
from tests.integration.consent.conftest import choice, put
from tests.support import http_client, index_members, wait_for

pytestmark = [pytest.mark.timeout(240), pytest.mark.slow]
DSR = bearer("dsr-officer-0001")


def verify_inclusion(leaf: bytes, index: int, size: int, path: list[bytes], root: bytes) -> bool:
    """RFC 9162, 2.1.3.2, written out here so the test does not trust the service's own code."""
    if index >= size:
        return False
    fn, sn, node = index, size - 1, hashlib.sha256(b"\x00" + leaf).digest()
    for sibling in path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            node = hashlib.sha256(b"\x01" + sibling + node).digest()
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            node = hashlib.sha256(b"\x01" + node + sibling).digest()
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and node == root


def checkpoint_verifies(checkpoint: dict[str, Any]) -> bool:
    message = f"segwarden-audit\n{checkpoint['tree_size']}\n{checkpoint['root']}\n{checkpoint['timestamp']}\n"
    key = Ed25519PublicKey.from_public_bytes(base64.b64decode(checkpoint["public_key"]))
    key.verify(base64.b64decode(checkpoint["signature"]), message.encode())  # raises when forged
    return True


def send_event(bootstrap: str, prefix: str, customer: str) -> None:
    event = CustomerEvent(
        event_id=new_event_id(), customer_id=customer, type="click", occurred_at=utcnow(), source="t"
    )
    producer = KafkaProducer(bootstrap_servers=bootstrap)
    try:
        producer.send(f"{prefix}customer.events", event.to_bytes(), key=customer.encode())
        producer.flush(30)
    finally:
        producer.close()


def test_an_erasure_receipt_shows_each_service_and_a_verifiable_inclusion_proof(
    start_service, peer_segmenter, customer, kafka_bootstrap: str, redis_client: Any
) -> None:
    segmenter = peer_segmenter
    topic_prefix = segmenter.env["TOPIC_PREFIX"]
    audit = start_service("audit", TOPIC_PREFIX=topic_prefix)
    # The internal token with only the scopes deploy/make_env.py gives it: enough for the calls.
    consent = start_service(
        "consent",
        TOPIC_PREFIX=topic_prefix,
        SEGMENTER_URL=segmenter.url,
        AUDIT_URL=audit.url,
        INTERNAL_TOKEN="internal-token-01",
    )
    for service in (segmenter, audit, consent):
        service.wait_ready(90)
    receipt_url = f"{consent.url}/v1/customers/{customer}/erasure"
    assert http_client.get(receipt_url, headers=DSR).status_code == 404  # never erased
    assert http_client.get(receipt_url, headers=bearer("consent-reader-01")).status_code == 403
    assert put(consent, customer, "marketing_email", choice()).status_code == 200
    send_event(kafka_bootstrap, topic_prefix, customer)
    holdings_url = f"{segmenter.url}/v1/customers/{customer}/erasure"
    # The consent change and the event arrive on two consumers, in either order: wait for both.
    wait_for(
        lambda: (
            {"customer:f", "customer:consent"}
            <= set(http_client.get(holdings_url, headers=bearer()).json()["held"])
        ),
        timeout=60,
        what="the segmenter's keys of the customer",
    )

    erased = http_client.post(receipt_url, headers=DSR)
    assert erased.status_code == 202
    event_id = erased.json()["event_id"]

    def settled() -> dict[str, Any] | None:
        body = http_client.get(receipt_url, headers=DSR, timeout=30).json()
        return body if body["status"] == "done" else None

    # Done in every service: the segmenter forgets everything but its pseudonymous marker.
    receipt = wait_for(settled, timeout=90, what="the erasure done in every service")
    assert receipt["event_id"] == event_id

    # The segmenter's part is what its Redis really holds under the raw id, and the receipt is
    # done only when that is nothing.
    def redis_holds() -> list[str]:
        layout = KeyLayout(f"sw:{topic_prefix}")
        keys = {"customer:s": layout.state(customer), "customer:outbox": layout.outbox(customer)}
        parts = [name for name, key in keys.items() if redis_client.exists(key)]
        known = [f"known:{p}" for p in range(3) if customer in index_members(redis_client, layout.known(p))]
        return parts + known

    segmenter_part = receipt["services"]["segmenter"]
    assert redis_holds() == [] and segmenter_part["status"] == "done"
    [marker] = segmenter_part["remains"]
    assert "pseudonym" in marker and customer not in marker

    # The ledger record is the erasure's, and the proof leads to a root the ledger's key signed.
    ledger = receipt["ledger"]
    records = http_client.get(
        f"{audit.url}/v1/audit", params={"customer_id": customer, "kind": "erasure_request"}, headers=bearer()
    ).json()["records"]
    [record] = [r for r in records if r["seq"] == ledger["seq"]]
    assert record["event_id"] == event_id and record["hash"] == ledger["record_hash"]
    checkpoint = ledger["checkpoint"]
    assert checkpoint["root"] == ledger["root"] and checkpoint["tree_size"] == ledger["tree_size"]
    assert checkpoint_verifies(checkpoint)
    path = [bytes.fromhex(node) for node in ledger["path"]]
    leaf, root = bytes.fromhex(ledger["record_hash"]), bytes.fromhex(ledger["root"])
    assert verify_inclusion(leaf, ledger["seq"], ledger["tree_size"], path, root)
    assert not verify_inclusion(hashlib.sha256(leaf).digest(), ledger["seq"], ledger["tree_size"], path, root)

    # Topics: each bound is the erasure time plus the topic's retention.
    requested = datetime.fromisoformat(receipt["requested_at"])
    bounds = {t["topic"]: t for t in receipt["topics"]}
    assert datetime.fromisoformat(
        bounds[f"{topic_prefix}erasure.requests"]["until"]
    ) == requested + timedelta(hours=72)
    assert f"{topic_prefix}customer.events.dlq" in bounds
    assert all("Apache Kafka" in t["bound"] for t in receipt["topics"])

    # The access bundle carries the receipt too.
    bundle = http_client.get(f"{consent.url}/v1/customers/{customer}/export", headers=DSR, timeout=30).json()
    assert bundle["erasure"]["event_id"] == event_id
    assert bundle["erasure"]["services"]["audit"]["status"] == "done"

    # A service that does not answer turns its part (and the receipt) back to not proven.
    audit.stop()
    receipt = http_client.get(receipt_url, headers=DSR, timeout=30).json()
    assert receipt["status"] == "pending" and receipt["services"]["audit"]["status"] == "unavailable"
    assert receipt["ledger"] is None
