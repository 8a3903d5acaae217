"""Drive the four services through the contract's public API: a destination, a segment, a grant,
an event, an opt-out."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from aiokafka import AIOKafkaProducer

from shared.events import CustomerEvent, new_event_id, utcnow
from tests.conftest import bearer
from tests.integration.delivery.receiver import Receiver
from tests.support import ServiceProcess, http_client

SEGMENT = "deploy-active"
CUSTOMER = "c-deploy-1"
PURPOSE = "marketing_email"


@dataclass
class Stack:
    consent: ServiceProcess
    segmenter: ServiceProcess
    audit: ServiceProcess
    delivery: ServiceProcess
    bootstrap: str
    prefix: str
    # A webhook receiver that fails its first request: delivery then retries and delivers.
    receiver: Receiver

    @property
    def services(self) -> dict[str, ServiceProcess]:
        names = ("consent", "segmenter", "audit", "delivery")
        return {name: getattr(self, name) for name in names}


def start_stack(start_service: Callable[..., ServiceProcess], env: dict[str, dict[str, str]]) -> Stack:
    """Start the four services at once (each a subprocess with its `env`), then wait for all."""
    names = ("consent", "segmenter", "audit", "delivery")
    consent, segmenter, audit, delivery = (start_service(name, **env[name]) for name in names)
    for service in (consent, segmenter, audit, delivery):
        service.wait_ready(90)
    first = env["consent"]
    log = Path(env["delivery"]["DATA_DIR"]) / "receiver.jsonl"
    receiver = Receiver("deploy-test-signing-secret-0123456789", log, fail_first=1).start()
    return Stack(
        consent, segmenter, audit, delivery, first["KAFKA_BOOTSTRAP_SERVERS"], first["TOPIC_PREFIX"], receiver
    )


def wait_until(check: Callable[[], bool], timeout: float, what: str, stack: Stack) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    logs = "\n".join(f"--- {name}\n{service.log()}" for name, service in stack.services.items())
    raise AssertionError(f"timed out waiting for {what}\n{logs}")


def put_consent(stack: Stack, status: str) -> None:
    body = {"status": status, "source": "deploy-test", "jurisdiction": "GDPR", "policy_version": "2026-03"}
    url = f"{stack.consent.url}/v1/customers/{CUSTOMER}/consents/{PURPOSE}"
    response = http_client.put(url, json=body, headers=bearer(), timeout=10)
    assert response.status_code == 200, response.text


def put_destination(stack: Stack) -> None:
    spec = {
        "name": "Deploy test",
        "endpoint": stack.receiver.url,
        "segments": [SEGMENT],
        "purposes": [PURPOSE],
        "agreement": {
            "processor": "Receiver GmbH",
            "reference": "DPA-1",
            "signed_on": "2026-01-01",
            "expires_on": "2099-01-01",
            "country": "DE",
            "transfer_mechanism": "none",
        },
        "signing_secret": stack.receiver.secret,
    }
    url = f"{stack.delivery.url}/v1/destinations/deploy"
    response = http_client.put(url, json=spec, headers=bearer(), timeout=10)
    assert response.status_code == 201, response.text


def is_member(stack: Stack) -> bool:
    url = f"{stack.segmenter.url}/v1/customers/{CUSTOMER}/segments"
    response = http_client.get(url, headers=bearer(), timeout=10)
    response.raise_for_status()
    segments = response.json()["segments"]
    return SEGMENT in [s if isinstance(s, str) else s["segment_id"] for s in segments]


async def publish(stack: Stack, base_topic: str, value: bytes) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=stack.bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(f"{stack.prefix}{base_topic}", value, key=CUSTOMER.encode())
    finally:
        await producer.stop()


async def opt_out_traffic(stack: Stack) -> None:
    """Join a customer to a consent-gated segment, opt them out, and feed each consumer a bad record."""
    put_destination(stack)
    segment = {"name": "Active", "rule": "event_count >= 1", "required_purposes": [PURPOSE]}
    response = http_client.put(f"{stack.segmenter.url}/v1/segments/{SEGMENT}", json=segment, headers=bearer())
    assert response.status_code == 200, response.text
    put_consent(stack, "granted")
    event = CustomerEvent(
        event_id=new_event_id(), customer_id=CUSTOMER, type="page_view", occurred_at=utcnow(), source="deploy"
    )
    await publish(stack, "customer.events", event.to_bytes())
    wait_until(lambda: is_member(stack), 60, "the customer to join the segment", stack)
    put_consent(stack, "denied")
    wait_until(lambda: not is_member(stack), 60, "the opt-out to evict the customer", stack)
    for topic in ("customer.events", "consent.requests"):
        await publish(stack, topic, b"{not json")
    wait_until(lambda: len(stack.receiver.bodies()) == 2, 60, "the join and the leave at the receiver", stack)
    verify = http_client.get(f"{stack.audit.url}/v1/audit/verify", headers=bearer(), timeout=30)
    assert verify.status_code == 200 and verify.json()["ok"] is True, verify.text
