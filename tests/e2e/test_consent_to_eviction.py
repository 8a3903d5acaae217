"""The mission end to end through public interfaces: grant, join, opt out, evicted, audited."""

from __future__ import annotations

import asyncio
import json

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from shared.events import CustomerEvent, MembershipChanged, new_event_id, utcnow
from tests.support import http_client

SEGMENT = "e2e-spenders"
MARKER = "e2e-repeat-buyers"
# Looks like what production ids often are: an e-mail address (the id pattern allows it).
CUSTOMER = "jane.doe@e2e.example"


def put_consent(stack, customer: str, purpose: str, status: str) -> httpx.Response:
    body = {"status": status, "source": "e2e", "jurisdiction": "GDPR", "policy_version": "2026-03"}
    return http_client.put(
        f"{stack.url('consent')}/v1/customers/{customer}/consents/{purpose}",
        json=body,
        headers=stack.admin_headers(),
        timeout=10,
    )


async def publish_purchase(stack, customer: str, amount: float) -> None:
    event = CustomerEvent(
        event_id=new_event_id(),
        customer_id=customer,
        type="purchase",
        occurred_at=utcnow(),
        source="e2e",
        attributes={"amount": amount, "currency": "EUR"},
    )
    producer = AIOKafkaProducer(bootstrap_servers=stack.env["KAFKA_BOOTSTRAP_SERVERS"])
    await producer.start()
    try:
        topic = f"{stack.env['TOPIC_PREFIX']}customer.events"
        await producer.send_and_wait(topic, event.to_bytes(), key=customer.encode())
    finally:
        await producer.stop()


async def next_membership(
    consumer: AIOKafkaConsumer, customer: str, segment: str, seen: list[MembershipChanged]
) -> MembershipChanged:
    """The next change of `customer` in `segment`; every change read on the way lands in `seen`."""
    async with asyncio.timeout(60):
        async for record in consumer:
            change = MembershipChanged.model_validate_json(record.value)
            seen.append(change)
            if change.customer_id == customer and change.segment_id == segment:
                return change
    raise AssertionError("unreachable")


def customer_segments(stack, customer: str) -> list:
    response = http_client.get(
        f"{stack.url('segmenter')}/v1/customers/{customer}/segments",
        headers=stack.admin_headers(),
        timeout=10,
    )
    response.raise_for_status()
    return [s if isinstance(s, str) else s["segment_id"] for s in response.json()["segments"]]


async def test_opt_out_evicts_and_the_ledger_proves_it(stack_launcher) -> None:
    # Every logger at DEBUG (libraries and access logs included): no level may log a customer id.
    stack = stack_launcher(extra_env={"LOG_LEVEL": "DEBUG"})
    stack.wait_all_ready()
    headers = stack.admin_headers()
    segments = {
        SEGMENT: {"name": "Spenders", "rule": "total_spend >= 100", "required_purposes": ["marketing_email"]},
        # Needs no consent: its join marks that the segmenter has processed the second purchase.
        MARKER: {"name": "Repeat buyers", "rule": "purchase_count >= 2", "required_purposes": []},
    }
    for segment_id, body in segments.items():
        response = http_client.put(
            f"{stack.url('segmenter')}/v1/segments/{segment_id}", json=body, headers=headers
        )
        assert response.status_code == 200, response.text
    seen: list[MembershipChanged] = []

    consumer = AIOKafkaConsumer(
        f"{stack.env['TOPIC_PREFIX']}segment.membership",
        bootstrap_servers=stack.env["KAFKA_BOOTSTRAP_SERVERS"],
        auto_offset_reset="earliest",
        fetch_max_wait_ms=50,
    )
    await consumer.start()
    try:
        assert put_consent(stack, CUSTOMER, "marketing_email", "granted").status_code == 200
        await publish_purchase(stack, CUSTOMER, 150.0)
        joined = await next_membership(consumer, CUSTOMER, SEGMENT, seen)
        # Which input completes the join depends on which consumer handles its input first: the
        # event path (the grant already applied: rule_matched) or the consent follower (the
        # purchase already applied: consent_granted). Both are right.
        assert joined.action == "joined" and joined.reason in ("rule_matched", "consent_granted")
        assert SEGMENT in customer_segments(stack, CUSTOMER)

        assert put_consent(stack, CUSTOMER, "marketing_email", "denied").status_code == 200
        left = await next_membership(consumer, CUSTOMER, SEGMENT, seen)
        assert (left.action, left.reason) == ("left", "consent_withdrawn")
        assert SEGMENT not in customer_segments(stack, CUSTOMER)

        # A later event must not bring the opted-out customer back.
        await publish_purchase(stack, CUSTOMER, 500.0)
        marker = await next_membership(consumer, CUSTOMER, MARKER, seen)
        assert marker.action == "joined"
        assert [c.action for c in seen if c.segment_id == SEGMENT] == ["joined", "left"]
    finally:
        await consumer.stop()

    def ledger_has_both_membership_changes() -> bool:
        response = http_client.get(
            f"{stack.url('audit')}/v1/audit",
            params={"customer_id": CUSTOMER, "kind": "membership_change"},
            headers=headers,
            timeout=10,
        )
        return response.status_code == 200 and len(response.json()["records"]) >= 2

    stack.wait_until(ledger_has_both_membership_changes, 60, "the ledger to record join and leave")
    records = http_client.get(
        f"{stack.url('audit')}/v1/audit", params={"customer_id": CUSTOMER}, headers=headers, timeout=10
    ).json()["records"]
    assert CUSTOMER not in json.dumps(records)
    assert (
        http_client.get(f"{stack.url('audit')}/v1/audit/verify", headers=headers, timeout=30).json()["ok"]
        is True
    )
    assert SEGMENT not in customer_segments(stack, CUSTOMER)
    # The export calls the segmenter and the audit service with the id in the path.
    export = http_client.get(
        f"{stack.url('consent')}/v1/customers/{CUSTOMER}/export", headers=headers, timeout=30
    )
    assert export.status_code == 200 and export.json()["segments"], export.text
    assert stack.interrupt() == 0
    assert_no_customer_id_logged(stack, [CUSTOMER])


def assert_no_customer_id_logged(stack, customers: list[str]) -> None:
    """Search every log of the run (the stack's output, each service's and the broker's)."""
    logs = [stack.output_path, *sorted((stack.data_dir / "logs").glob("*.log"))]
    assert len(logs) >= 4, f"expected the stack's and each service's log, found {logs}"
    found = [
        f"{path.name}: {line[:200]}"
        for path in logs
        for line in path.read_text(errors="replace").splitlines()
        if any(c in line for c in customers)
    ]
    assert found == [], f"{len(found)} log lines name a customer:\n" + "\n".join(found[:20])


def test_demo_drives_a_running_stack_and_measures_evictions(stack_launcher) -> None:
    import subprocess
    import sys

    stack = stack_launcher()
    stack.wait_all_ready()
    result = subprocess.run(
        [sys.executable, "-m", "segwarden", "demo", "--customers", "12", "--duration", "12"],
        env=stack.env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "demo-big-spenders" in result.stdout and "eviction latency p50" in result.stdout
    members = http_client.get(
        f"{stack.url('segmenter')}/v1/segments/demo-big-spenders/stats",
        headers=stack.admin_headers(),
        timeout=10,
    ).json()
    assert members["size"] >= 0
    verify = http_client.get(
        f"{stack.url('audit')}/v1/audit/verify", headers=stack.admin_headers(), timeout=30
    ).json()
    assert verify["ok"] is True and verify["length"] > 12
    assert stack.interrupt() == 0
