"""Endpoints that fail for a while, time out or answer 410 Gone, against a real delivery process.

The durations (cool-down, timeout, backoff) are shortened by settings; the tests wait on the
states the service shows (`GET`'s `circuit` and `status`, its metrics), never on time.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from kafka import KafkaProducer

from tests.conftest import bearer
from tests.integration.delivery.harness import (
    Receiver,
    Receivers,
    Topics,
    delivery,
    metric,
    put_destination,
    receiver,
    sample,
    shown,
)
from tests.support import ServiceProcess, http_client, wait_for

BREAKER = {"DELIVERY_BREAKER_FAILURES": "2", "DELIVERY_BREAKER_COOLDOWN_S": "0.5"}
CUSTOMERS = ["c-1", "c-2", "c-3"]
PAUSED_NOW = "segwarden_delivery_destination_paused"


def join_everyone(topics: Topics, kafka_bootstrap: str) -> None:
    """Each customer consents and joins; then c-1 leaves (so one customer has two changes in order)."""
    for customer in CUSTOMERS:
        topics.consent(customer, granted=True, sequence=1)
    topics.handled(kafka_bootstrap, "consent.state")
    for customer in CUSTOMERS:
        topics.membership(customer, "joined")
    topics.membership("c-1", "left", reason="rule_unmatched")


def settled(service: ServiceProcess, destination_id: str) -> dict[str, int] | None:
    counts: dict[str, int] = shown(service, destination_id)["deliveries"]
    return counts if counts and "pending" not in counts else None


def assert_everything_once_in_order(target: Receiver) -> None:
    """Four changes, each acknowledged under one key exactly once; c-1's join before its leave."""
    accepted = Counter(a["key"] for a in target.attempts if a["status"] == 200)
    assert len(accepted) == 4 and set(accepted.values()) == {1}, accepted
    by_subject: dict[str, list[str]] = {}
    for body in target.bodies():
        by_subject.setdefault(body["subject"], []).append(body["action"])
    assert sorted(by_subject.values()) == [["joined"], ["joined"], ["joined", "left"]]


def test_a_receiver_down_gets_everything_once_it_is_back_exactly_once_by_key(
    start_service: Any, receivers: Receivers, producer: KafkaProducer, topic_prefix: str, kafka_bootstrap: str
) -> None:
    # Five attempts per webhook: without the circuit, the outage below would dead-letter them all.
    service = delivery(start_service, DELIVERY_MAX_ATTEMPTS="5", DELIVERY_RETRY_CAP_S="0.1", **BREAKER)
    target = receiver(receivers)
    put_destination(service, "mailer", target)
    target.kill()  # down: connections refused
    join_everyone(Topics(producer, topic_prefix), kafka_bootstrap)
    wait_for(lambda: shown(service, "mailer")["circuit"] == "open", what="the circuit to open")
    opened = metric(service, "segwarden_delivery_retried_total", "mailer")
    # While open, only probes go, one per cool-down: two failed ones and it is still open.
    wait_for(
        lambda: metric(service, "segwarden_delivery_retried_total", "mailer") >= opened + 2,
        what="two failed probes",
    )
    assert metric(service, "segwarden_delivery_circuit_state", "mailer") in (1, 2)  # half-open or open
    target.start()  # back, on the same port, with what it acknowledged before
    assert wait_for(lambda: settled(service, "mailer"), what="everything delivered") == {"delivered": 4}
    assert shown(service, "mailer")["circuit"] == "closed"
    assert metric(service, "segwarden_delivery_circuit_state", "mailer") == 0
    assert_everything_once_in_order(target)
    # Each acknowledgement observed its latency from the change, the outage included.
    assert metric(service, "segwarden_delivery_delivered_total", "mailer") == 4
    assert metric(service, "segwarden_delivery_latency_seconds_count", "mailer") == 4


def test_an_endpoint_that_times_out_opens_its_circuit_while_others_are_delivered(
    start_service: Any, receivers: Receivers, producer: KafkaProducer, topic_prefix: str, kafka_bootstrap: str
) -> None:
    service = delivery(start_service, DELIVERY_TIMEOUT_S="0.5", DELIVERY_MAX_ATTEMPTS="50", **BREAKER)
    healthy, slow = receiver(receivers), receiver(receivers)
    slow.set(hang=True)
    put_destination(service, "healthy", healthy)
    put_destination(service, "slow", slow)
    join_everyone(Topics(producer, topic_prefix), kafka_bootstrap)
    wait_for(lambda: shown(service, "slow")["circuit"] == "open", what="the slow endpoint's circuit to open")
    assert wait_for(lambda: settled(service, "healthy"), what="the healthy one") == {"delivered": 4}
    assert shown(service, "healthy")["circuit"] == "closed"
    slow.set(hang=False)  # answers in time again: the next probe closes the circuit
    assert wait_for(lambda: settled(service, "slow"), what="the slow one") == {"delivered": 4}
    # Requests it held past the timeout were answered late, so a key may show twice; bodies()
    # counts each key once, as a receiver that keeps its keys does.
    assert len(slow.bodies()) == 4 and shown(service, "slow")["circuit"] == "closed"


def test_410_gone_pauses_the_destination_until_a_put_resumes_it(
    start_service: Any, receivers: Receivers, producer: KafkaProducer, topic_prefix: str, kafka_bootstrap: str
) -> None:
    service = delivery(start_service)
    gone = receiver(receivers, fail_first=10**6, status=410)
    put_destination(service, "gone", gone)
    topics = Topics(producer, topic_prefix)
    topics.consent("c-1", granted=True, sequence=1)
    topics.membership("c-1", "joined")
    paused = wait_for(lambda: (got := shown(service, "gone"))["status"] == "paused" and got, what="the pause")
    assert paused["reason"].startswith("the endpoint answered 410 Gone at ")
    assert metric(service, "segwarden_delivery_paused_total", "gone") == 1
    wait_for(lambda: sample(service, PAUSED_NOW, "gone") == 1, what="the paused gauge at 1")
    # Enqueued while paused, it waits: had it been sent, the receiver would have answered it 410.
    topics.consent("c-2", granted=True, sequence=1)
    topics.membership("c-2", "joined")
    topics.handled(kafka_bootstrap, "segment.membership")
    assert shown(service, "gone")["deliveries"] == {"pending": 2}
    gone.set(fail_first=0)
    resumed = put_destination(service, "gone", gone, expected=200)
    assert (resumed["status"], resumed["reason"]) == ("active", None)
    assert wait_for(lambda: settled(service, "gone"), what="the resumed deliveries") == {"delivered": 2}
    first = gone.attempts[0]["body"]["subject"]
    answers: dict[str, list[int]] = {}
    for attempt in gone.attempts:
        answers.setdefault(attempt["body"]["subject"], []).append(attempt["status"])
    assert answers.pop(first) == [410, 200] and list(answers.values()) == [[200]]
    assert metric(service, "segwarden_delivery_paused_total", "gone") == 1
    wait_for(lambda: sample(service, PAUSED_NOW, "gone") == 0, what="the paused gauge back at 0")
    assert http_client.delete(f"{service.url}/v1/destinations/gone", headers=bearer()).status_code == 204
    # A deleted destination's series goes, so an alert on it does not stay firing.
    wait_for(lambda: sample(service, PAUSED_NOW, "gone") is None, what="the gauge of a deleted one gone")
