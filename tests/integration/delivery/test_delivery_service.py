"""The delivery service as a real process, against the real broker and real HTTP receivers."""

from __future__ import annotations

import json
import re
import signal
import uuid
from datetime import date, timedelta
from typing import Any

from kafka import KafkaProducer

from tests.conftest import bearer
from tests.integration.delivery.harness import (
    PURPOSE,
    Receiver,
    Receivers,
    Topics,
    delivery,
    put_destination,
    receiver,
    sample,
    shown,
)
from tests.support import ServiceProcess, http_client, read_topic, wait_for


def test_consented_customers_are_delivered_signed_under_a_pseudonym_per_destination(
    start_service: Any, receivers: Receivers, producer: KafkaProducer, topic_prefix: str
) -> None:
    service = delivery(start_service)
    mailer, ads = receiver(receivers), receiver(receivers)
    put_destination(service, "mailer", mailer)
    put_destination(service, "ads", ads)
    topics = Topics(producer, topic_prefix)
    topics.consent("c-unconsented", granted=False, sequence=1)
    topics.membership("c-unconsented", "joined")
    topics.consent("c-consented", granted=True, sequence=1)
    topics.membership("c-consented", "joined")

    for target in (mailer, ads):
        wait_for(target.bodies, what="the consented customer's join")
    assert [b["action"] for b in mailer.bodies()] == ["joined"]
    assert all(attempt["signed"] for attempt in mailer.attempts + ads.attempts)
    (at_mailer,), (at_ads,) = mailer.bodies(), ads.bodies()
    assert at_mailer["subject_type"] == "pseudonym" and at_mailer["subject"] != at_ads["subject"]
    assert "c-consented" not in (at_mailer["subject"], at_ads["subject"])
    assert len(mailer.attempts) == 1  # the unconsented customer, read first, was never sent


def test_a_withdrawal_delivers_left_while_the_segment_still_holds(
    start_service: Any, receivers: Receivers, producer: KafkaProducer, topic_prefix: str
) -> None:
    service = delivery(start_service)
    mailer = receiver(receivers)
    put_destination(service, "mailer", mailer)
    topics = Topics(producer, topic_prefix)
    topics.consent("c-1", granted=True, sequence=1)
    topics.membership("c-1", "joined")
    wait_for(mailer.bodies, what="the join")
    topics.consent("c-1", granted=False, sequence=2)
    wait_for(lambda: len(mailer.bodies()) == 2, what="the leave")
    # The join's reason depends on which topic's record came second; the leave's never does.
    assert [b["action"] for b in mailer.bodies()] == ["joined", "left"]
    assert mailer.bodies()[1]["reason"] == "consent_withdrawn"


def applied_consent(service: ServiceProcess, customer_id: str) -> dict[str, Any]:
    """The delivery service's `GET /v1/customers/{id}/consent` (with the consent service's scope)."""
    url = f"{service.url}/v1/customers/{customer_id}/consent"
    response = http_client.get(url, headers=bearer("internal-token-01"), timeout=10)
    assert response.status_code == 200, response.text
    purposes: dict[str, Any] = response.json()["purposes"]
    return purposes


def webhooks(total: int = 0, delivered: int = 0, pending: int = 0, failed: int = 0) -> dict[str, int]:
    return {"total": total, "delivered": delivered, "pending": pending, "failed": failed}


def test_the_consent_change_applied_is_shown_with_the_webhooks_it_sent(
    start_service: Any, receivers: Receivers, producer: KafkaProducer, topic_prefix: str, kafka_bootstrap: str
) -> None:
    service = delivery(start_service)
    mailer = receiver(receivers)
    put_destination(service, "mailer", mailer)
    topics = Topics(producer, topic_prefix)
    grant = topics.consent("c-1", granted=True, sequence=1)
    topics.handled(kafka_bootstrap, "consent.state")
    held = applied_consent(service, "c-1")[PURPOSE]
    assert (held["cause_ids"], held["webhooks"]) == ([grant], webhooks())  # in no segment yet
    topics.membership("c-1", "joined")
    wait_for(mailer.bodies, what="the join")

    withdrawal = topics.change("c-1", granted=False, sequence=2)
    held = wait_for(
        lambda: (p := applied_consent(service, "c-1")[PURPOSE])["webhooks"] == webhooks(1, delivered=1) and p,
        what="the withdrawal's leave, delivered",
    )
    assert (held["effective"], held["sequence"], held["cause_ids"]) == (False, 2, [withdrawal])
    assert [b["action"] for b in mailer.bodies()] == ["joined", "left"]
    # The snapshot consent publishes for the same change carries it too; an older one moves nothing.
    snapshot = topics.consent("c-1", granted=False, sequence=2)
    topics.consent("c-1", granted=True, sequence=1)
    topics.handled(kafka_bootstrap, "consent.state")
    held = applied_consent(service, "c-1")[PURPOSE]
    assert (held["sequence"], held["cause_ids"], held["webhooks"]) == (
        2,
        [withdrawal, snapshot],
        webhooks(1, 1),
    )
    # A purpose no destination receives is applied, with nothing sent.
    profiling = topics.change("c-1", granted=True, sequence=3, purpose="profiling")
    topics.handled(kafka_bootstrap, "consent.changes")
    other = applied_consent(service, "c-1")["profiling"]
    assert (other["cause_ids"], other["sequence"], other["webhooks"]) == ([profiling], 3, webhooks())
    assert applied_consent(service, "c-unknown") == {}


def test_a_leave_the_segmenter_sent_for_a_withdrawal_counts_as_the_withdrawals(
    start_service: Any, receivers: Receivers, producer: KafkaProducer, topic_prefix: str
) -> None:
    """The segmenter's eviction may reach delivery before the withdrawal itself: its leave names
    the withdrawal as its cause, and the withdrawal, arriving after, finds nothing left to send."""
    service = delivery(start_service)
    mailer = receiver(receivers)
    put_destination(service, "mailer", mailer)
    topics = Topics(producer, topic_prefix)
    topics.consent("c-2", granted=True, sequence=1)
    topics.membership("c-2", "joined")
    wait_for(mailer.bodies, what="the join")
    withdrawal_id = uuid.uuid4().hex
    topics.membership("c-2", "left", "consent_withdrawn", cause_event_id=withdrawal_id)
    wait_for(lambda: len(mailer.bodies()) == 2, what="the eviction's leave")
    assert topics.change("c-2", granted=False, sequence=2, event_id=withdrawal_id) == withdrawal_id
    held = wait_for(
        lambda: (p := applied_consent(service, "c-2")[PURPOSE])["cause_ids"] == [withdrawal_id] and p,
        what="the withdrawal applied",
    )
    assert held["webhooks"] == webhooks(1, delivered=1) and len(mailer.bodies()) == 2


def test_an_erasure_delivers_left_at_every_destination(
    start_service: Any,
    receivers: Receivers,
    producer: KafkaProducer,
    topic_prefix: str,
    kafka_bootstrap: str,
) -> None:
    service = delivery(start_service)
    mailer, ads = receiver(receivers), receiver(receivers)
    put_destination(service, "mailer", mailer)
    put_destination(service, "ads", ads)
    topics = Topics(producer, topic_prefix)
    topics.consent("c-1", granted=True, sequence=1)
    topics.membership("c-1", "joined")
    for target in (mailer, ads):
        wait_for(target.bodies, what="the join")
    topics.tombstone(b"\xff\xfe not an id")  # dead-lettered; the stream goes on
    topics.erasure("c-1")
    for target in (mailer, ads):
        wait_for(lambda: len(target.bodies()) == 2, what="the leave")  # noqa: B023  # called at once
        assert [(b["action"], b["reason"]) for b in target.bodies()][1] == ("left", "erased")
    (letter,) = read_topic(kafka_bootstrap, topic_prefix + "consent.state.dlq", 1)
    assert "not a customer id" in json.loads(letter)["error"]


def test_a_destination_needs_purposes_of_the_catalog(start_service: Any, receivers: Receivers) -> None:
    service = delivery(start_service)
    spec = {"name": "x", "endpoint": receiver(receivers).url, "segments": ["vip"], "signing_secret": "s" * 32}
    url = f"{service.url}/v1/destinations/x"
    refused = http_client.put(url, json=spec | {"purposes": [PURPOSE, "no_such_purpose"]}, headers=bearer())
    assert refused.status_code == 422 and refused.json()["detail"][0]["loc"] == ["body", "purposes", 1]
    assert http_client.get(url, headers=bearer()).status_code == 404
    shown = http_client.put(url, json=spec | {"purposes": [PURPOSE]}, headers=bearer()).json()
    assert (shown["status"], shown["reason"]) == ("suspended", "no data-processing agreement")


def test_an_expired_agreement_stops_delivery_and_says_why(
    start_service: Any, receivers: Receivers, producer: KafkaProducer, topic_prefix: str
) -> None:
    service = delivery(start_service)
    current, lapsed = receiver(receivers), receiver(receivers)
    put_destination(service, "current", current)
    expired_on = date.today() - timedelta(days=1)
    shown = put_destination(service, "lapsed", lapsed, expires_on=expired_on)
    assert (shown["status"], shown["reason"]) == ("suspended", f"the agreement expired on {expired_on}")
    assert "signing_secret" not in shown
    topics = Topics(producer, topic_prefix)
    topics.consent("c-1", granted=True, sequence=1)
    topics.membership("c-1", "joined")
    wait_for(current.bodies, what="the join at the destination in force")
    got = http_client.get(f"{service.url}/v1/destinations/lapsed", headers=bearer()).json()
    assert got["status"] == "suspended" and got["deliveries"] == {}
    assert lapsed.attempts == []
    suspended = "segwarden_delivery_destination_suspended"
    assert wait_for(lambda: sample(service, suspended, "lapsed"), what="the suspended gauge") == 1
    assert sample(service, suspended, "current") == 0


def test_a_failing_receiver_gets_each_change_once_in_order(
    start_service: Any,
    receivers: Receivers,
    producer: KafkaProducer,
    topic_prefix: str,
    kafka_bootstrap: str,
) -> None:
    # Its circuit never opens here: this test is about retries and dead letters alone.
    service = delivery(start_service, DELIVERY_MAX_ATTEMPTS="6", DELIVERY_BREAKER_FAILURES="1000")
    flaky, down = receiver(receivers, fail_first=3), receiver(receivers, fail_first=1000)
    put_destination(service, "flaky", flaky)
    put_destination(service, "down", down)
    topics = Topics(producer, topic_prefix)
    topics.consent("c-1", granted=True, sequence=1)
    topics.handled(kafka_bootstrap, "consent.state")
    topics.membership("c-1", "joined")
    topics.membership("c-1", "left", reason="rule_unmatched")

    def settled(destination_id: str) -> dict[str, int] | None:
        response = http_client.get(f"{service.url}/v1/destinations/{destination_id}", headers=bearer())
        counts: dict[str, int] = response.json()["deliveries"]
        return counts if "pending" not in counts else None

    assert wait_for(lambda: settled("flaky"), what="flaky settled") == {"delivered": 2}
    assert [b["action"] for b in flaky.bodies()] == ["joined", "left"]
    keys = [a["key"] for a in flaky.attempts]
    assert keys[:4] == [keys[0]] * 4 and keys[4:] == [keys[4]] and keys[0] != keys[4]
    # Retried up to the limit, then kept as a dead-letter record; the left behind it goes on.
    assert wait_for(lambda: settled("down"), what="down settled") == {"dead": 2}
    assert len(down.attempts) == 12 and down.bodies() == []


def test_an_endpoint_that_hangs_holds_up_only_its_own_deliveries(
    start_service: Any, receivers: Receivers, producer: KafkaProducer, topic_prefix: str
) -> None:
    service = delivery(start_service, DELIVERY_TIMEOUT_S="60")
    healthy, hanging = receiver(receivers), receiver(receivers)
    hanging.set(hang=True)
    put_destination(service, "healthy", healthy)
    put_destination(service, "hanging", hanging)
    topics = Topics(producer, topic_prefix)
    topics.consent("c-1", granted=True, sequence=1)
    topics.membership("c-1", "joined")
    wait_for(healthy.bodies, what="the first join at the healthy destination")
    # The hanging endpoint holds its request for c-1 open; what follows must still reach the other.
    for customer in ("c-2", "c-3"):
        topics.consent(customer, granted=True, sequence=1)
        topics.membership(customer, "joined")
    wait_for(lambda: len(healthy.bodies()) == 3, what="every join at the healthy destination")
    assert hanging.bodies() == []
    hanging.set(hang=False)
    wait_for(lambda: len(hanging.bodies()) == 3, what="the hanging destination answering at last")


def test_a_delivery_killed_while_retrying_sends_the_change_once_after_its_restart(
    start_service: Any, receivers: Receivers, producer: KafkaProducer, topic_prefix: str
) -> None:
    service = delivery(start_service, DELIVERY_TIMEOUT_S="1", DELIVERY_RETRY_CAP_S="0.5")
    down = receiver(receivers, fail_first=10**6)
    put_destination(service, "mailer", down)
    topics = Topics(producer, topic_prefix)
    topics.consent("c-1", granted=True, sequence=1)
    topics.membership("c-1", "joined")
    wait_for(lambda: len(down.attempts) >= 2, what="the webhook retried")
    service.kill()
    down.set(fail_first=0)  # back up: the next request is accepted
    service.start().wait_ready()
    wait_for(down.bodies, timeout=60, what="the join after the restart")
    assert len({attempt["key"] for attempt in down.attempts}) == 1
    counts = wait_for(
        lambda: http_client.get(f"{service.url}/v1/destinations/mailer", headers=bearer()).json()[
            "deliveries"
        ],
        what="the outbox",
    )
    assert counts == {"delivered": 1}


def restart_after_the_kill(service: ServiceProcess) -> None:
    """Wait for the failpoint's SIGKILL, then start the service again without it."""
    assert service.process is not None
    service.process.wait(60)
    service.env["FAILPOINTS"] = ""
    service.start().wait_ready()


def delivered_once(service: ServiceProcess, target: Receiver) -> None:
    wait_for(target.bodies, timeout=60, what="the join")
    assert len(target.bodies()) == 1 and len({a["key"] for a in target.attempts}) == 1
    counts = wait_for(
        lambda: http_client.get(f"{service.url}/v1/destinations/mailer", headers=bearer()).json()[
            "deliveries"
        ],
        what="the outbox",
    )
    assert counts == {"delivered": 1}


def test_a_kill_after_routing_before_the_offset_commit_enqueues_the_change_once(
    start_service: Any, receivers: Receivers, producer: KafkaProducer, topic_prefix: str
) -> None:
    # The second input routed (consent or membership, whichever comes second) makes the join.
    service = delivery(start_service, FAILPOINTS="delivery.after_route=kill@2")
    mailer = receiver(receivers)
    put_destination(service, "mailer", mailer)
    topics = Topics(producer, topic_prefix)
    topics.consent("c-1", granted=True, sequence=1)
    topics.membership("c-1", "joined")
    restart_after_the_kill(service)  # the input is read again: same idempotency key, same holding
    delivered_once(service, mailer)


def test_a_kill_after_the_receiver_acknowledged_resends_under_the_same_key(
    start_service: Any, receivers: Receivers, producer: KafkaProducer, topic_prefix: str
) -> None:
    service = delivery(start_service, DELIVERY_TIMEOUT_S="1", FAILPOINTS="delivery.after_ack=kill")
    mailer = receiver(receivers)
    put_destination(service, "mailer", mailer)
    topics = Topics(producer, topic_prefix)
    topics.consent("c-1", granted=True, sequence=1)
    topics.membership("c-1", "joined")
    restart_after_the_kill(service)
    # Sent again once the lease ran out (at least once); the receiver's key makes it once.
    wait_for(lambda: len(mailer.attempts) == 2, timeout=60, what="the resend after the restart")
    delivered_once(service, mailer)


def test_a_stop_waits_for_the_webhook_in_flight_and_records_its_answer(
    start_service: Any, receivers: Receivers, producer: KafkaProducer, topic_prefix: str
) -> None:
    """SIGTERM while a POST waits for its answer: the stop lets it end (within the timeout) and
    marks it delivered, so the restart sends nothing again. Cancelled instead, the receiver has
    it but the outbox does not, and the restart sends it a second time once its lease is out."""
    service = delivery(start_service, DELIVERY_TIMEOUT_S="30")
    mailer = receiver(receivers)
    mailer.set(hang=True)
    put_destination(service, "mailer", mailer)
    topics = Topics(producer, topic_prefix)
    topics.consent("c-1", granted=True, sequence=1)
    topics.membership("c-1", "joined")
    wait_for(lambda: mailer.waiting == 1, what="the POST in flight")
    assert service.process is not None
    service.process.terminate()
    # The whole log: a tail could have moved past the line by the time it is read.
    wait_for(lambda: "waiting for the webhooks in flight" in service.log(10**6), what="the stop to wait")
    mailer.set(hang=False)
    # uvicorn raises the signal again once it has shut down: a clean stop ends by SIGTERM.
    assert service.process.wait(30) in (0, -signal.SIGTERM), service.log()
    service.start().wait_ready()
    assert shown(service, "mailer")["deliveries"] == {"delivered": 1}
    assert len(mailer.attempts) == 1


def test_a_second_process_on_the_store_is_refused_and_the_first_goes_on(
    start_service: Any, receivers: Receivers, producer: KafkaProducer, topic_prefix: str
) -> None:
    """The store is one process's: a second one on the same DATA_DIR (a scale-up by mistake)
    would keep circuits and relays of its own beside the first; it exits before opening it."""
    first = delivery(start_service)
    second = start_service("delivery")
    assert second.process is not None
    assert second.process.wait(60) == 2  # a configuration mistake: one line, no traceback
    # The whole log, which both processes write: the first goes on writing after the second ended.
    refused = r"^segwarden: \S+delivery\.db is in use by another process"
    assert re.search(refused, second.log(10**6), re.M)
    mailer = receiver(receivers)
    put_destination(first.wait_ready(), "mailer", mailer)
    topics = Topics(producer, topic_prefix)
    topics.consent("c-1", granted=True, sequence=1)
    topics.membership("c-1", "joined")
    delivered_once(first, mailer)


def test_the_retention_job_prunes_ended_webhooks_but_keeps_the_latest(
    start_service: Any, receivers: Receivers, producer: KafkaProducer, topic_prefix: str, kafka_bootstrap: str
) -> None:
    # A half-second retention, pruned every 0.2 s: the test waits on the counter and the rows.
    service = delivery(start_service, DELIVERY_OUTBOX_RETENTION_S="0.5", DELIVERY_PRUNE_INTERVAL_S="0.2")
    mailer = receiver(receivers)
    put_destination(service, "mailer", mailer)
    topics = Topics(producer, topic_prefix)
    topics.consent("c-1", granted=True, sequence=1)
    topics.handled(kafka_bootstrap, "consent.state")  # consented before the join is read
    topics.membership("c-1", "joined")
    topics.membership("c-1", "left", reason="rule_unmatched")
    wait_for(lambda: len(mailer.bodies()) == 2, what="the join and the leave")

    def pruned() -> float:
        found = re.search(
            r'^segwarden_delivery_pruned_total\{kind="webhooks"\} (\S+)$',
            http_client.get(f"{service.url}/metrics").text,
            re.M,
        )
        return float(found.group(1)) if found else 0.0

    wait_for(lambda: pruned() >= 1, what="the join pruned")
    # The leave is the latest of its destination, segment and customer: the propagation keeps it.
    assert shown_deliveries(service) == {"delivered": 1}
    propagation = http_client.get(
        f"{service.url}/v1/customers/c-1/propagation", headers=bearer("dsr-officer-0001")
    )
    (segment,) = propagation.json()["destinations"][0]["segments"]
    assert (segment["last_action"], segment["held"]) == ("left", False)


def shown_deliveries(service: ServiceProcess) -> dict[str, int]:
    got = http_client.get(f"{service.url}/v1/destinations/mailer", headers=bearer()).json()
    return dict(got["deliveries"])
