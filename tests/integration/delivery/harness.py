"""What the delivery tests share: receiver processes, destinations, and the topics the delivery
service reads, published as the consent service and the segmenter would."""

from __future__ import annotations

import re
import uuid
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from shared.events import (
    ConsentChanged,
    ConsentStateSnapshot,
    ConsentStatus,
    ErasureRequested,
    MembershipChanged,
    PurposeState,
    utcnow,
)
from tests.conftest import bearer
from tests.integration.delivery.receiver import Receiver
from tests.support import ServiceProcess, http_client, wait_for

PURPOSE = "marketing_email"


class Receivers(list[Receiver]):
    def __init__(self, directory: Path) -> None:
        super().__init__()
        self.directory = directory


def receiver(receivers: Receivers, fail_first: int = 0, status: int = 503) -> Receiver:
    """A receiver process, logging to the test's own directory."""
    log = receivers.directory / f"receiver-{len(receivers)}.jsonl"
    started = Receiver(uuid.uuid4().hex * 2, log, fail_first=fail_first, status=status)
    receivers.append(started)
    return started.start()


def agreement(expires_on: date) -> dict[str, Any]:
    return {
        "processor": "Mailer GmbH",
        "reference": "DPA-2026-7",
        "signed_on": "2026-01-01",
        "expires_on": expires_on.isoformat(),
        "country": "DE",
        "transfer_mechanism": "none",
    }


def put_destination(
    service: ServiceProcess,
    destination_id: str,
    target: Receiver,
    expires_on: date | None = None,
    expected: int = 201,
) -> dict[str, Any]:
    """PUT a destination for `target` (201: new; 200: replaced) and return what it answered."""
    spec = {
        "name": destination_id,
        "endpoint": target.url,
        "segments": ["vip"],
        "purposes": [PURPOSE],
        "agreement": agreement(expires_on or date.today() + timedelta(days=365)),
        "signing_secret": target.secret,
    }
    response = http_client.put(f"{service.url}/v1/destinations/{destination_id}", json=spec, headers=bearer())
    assert response.status_code == expected, response.text
    return dict(response.json())


class Topics:
    """Publishes what the consent service and the segmenter would, all on partition 0, so a
    later record's effect shows that every earlier one was handled (a partition is read in order)."""

    def __init__(self, producer: KafkaProducer, prefix: str) -> None:
        self.producer, self.prefix = producer, prefix
        self.sent: dict[str, int] = {}

    def handled(self, bootstrap: str, topic: str) -> None:
        """Wait until the delivery service committed everything sent to `topic` (it commits after
        routing): what another topic carries next cannot overtake it."""
        # Never subscribes, so it only fetches the group's offsets and never joins the group.
        group = KafkaConsumer(
            bootstrap_servers=bootstrap, group_id=self.prefix + "segwarden-delivery", enable_auto_commit=False
        )
        tp = TopicPartition(self.prefix + topic, 0)
        try:
            wait_for(
                lambda: (group.committed(tp) or 0) >= self.sent[topic],
                what=f"the delivery service to handle {topic}",
            )
        finally:
            group.close()

    def consent(self, customer_id: str, granted: bool, sequence: int) -> str:
        """A `consent.state` snapshot of PURPOSE; its event id."""
        status: ConsentStatus = "granted" if granted else "denied"
        state = PurposeState(status=status, effective=granted, sequence=sequence)
        snapshot = ConsentStateSnapshot(
            event_id=uuid.uuid4().hex, customer_id=customer_id, purposes={PURPOSE: state}, updated_at=utcnow()
        )
        self._send("consent.state", customer_id, snapshot.to_bytes())
        return snapshot.event_id

    def change(
        self,
        customer_id: str,
        granted: bool,
        sequence: int,
        purpose: str = PURPOSE,
        event_id: str | None = None,
    ) -> str:
        """A `consent.changes` record (a choice of the customer's); its event id."""
        change = ConsentChanged(
            event_id=event_id or uuid.uuid4().hex,
            customer_id=customer_id,
            purpose=purpose,
            status="granted" if granted else "denied",
            previous_status=None,
            reason="user",
            source="preference-center",
            jurisdiction="GDPR",
            policy_version="2026-03",
            recorded_at=utcnow(),
            sequence=sequence,
        )
        self._send("consent.changes", customer_id, change.to_bytes())
        return change.event_id

    def membership(
        self, customer_id: str, action: str, reason: str = "rule_matched", cause_event_id: str | None = None
    ) -> None:
        change = MembershipChanged(
            event_id=uuid.uuid4().hex,
            segment_id="vip",
            customer_id=customer_id,
            action=action,  # type: ignore[arg-type]
            reason=reason,  # type: ignore[arg-type]
            cause_event_id=cause_event_id,
            cause_at=None,
            at=utcnow(),
        )
        self._send("segment.membership", customer_id, change.to_bytes())

    def erasure(self, customer_id: str) -> None:
        request = ErasureRequested(event_id=uuid.uuid4().hex, customer_id=customer_id, requested_at=utcnow())
        self._send("erasure.requests", customer_id, request.to_bytes())

    def tombstone(self, key: bytes) -> None:
        self.producer.send(self.prefix + "consent.state", value=None, key=key, partition=0).get(10)

    def _send(self, topic: str, key: str, value: bytes) -> None:
        self.producer.send(self.prefix + topic, value=value, key=key.encode(), partition=0).get(10)
        self.sent[topic] = self.sent.get(topic, 0) + 1


def delivery(start_service: Any, **env: str) -> ServiceProcess:
    service: ServiceProcess = start_service("delivery", DELIVERY_RETRY_INITIAL_S="0.05", **env)
    return service.wait_ready()


def shown(service: ServiceProcess, destination_id: str) -> dict[str, Any]:
    """What `GET /v1/destinations/{id}` shows."""
    response = http_client.get(f"{service.url}/v1/destinations/{destination_id}", headers=bearer())
    response.raise_for_status()
    return dict(response.json())


def metric(service: ServiceProcess, name: str, destination_id: str) -> float:
    """A metric of one destination, 0 while it has none."""
    return sample(service, name, destination_id) or 0.0


def sample(service: ServiceProcess, name: str, destination_id: str) -> float | None:
    """A metric of one destination, None while it has none (a gauge not set yet, or removed)."""
    pattern = re.compile(rf'^{name}\{{destination="{re.escape(destination_id)}"\}} (\S+)$', re.M)
    found = pattern.search(http_client.get(f"{service.url}/metrics").text)
    return float(found.group(1)) if found else None
