"""What delivery leaves behind: outcomes in the audit ledger, and no customer id after an erasure.

A real delivery process and a real audit process on one broker and data dir (so one
PSEUDONYM_KEY, as in a deployment), and a receiver process.
"""

from __future__ import annotations

import sqlite3
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from kafka import KafkaProducer

from shared.embedded import free_port
from tests.conftest import bearer
from tests.integration.delivery.harness import (
    PURPOSE,
    Receivers,
    Topics,
    delivery,
    put_destination,
    receiver,
    shown,
)
from tests.support import http_client, read_topic, wait_for

CUSTOMER = "c-records-7"
DSR = bearer("dsr-officer-0001")


def ledger(audit: Any, kind: str) -> list[dict[str, Any]]:
    params = {"customer_id": CUSTOMER, "kind": kind}
    response = http_client.get(f"{audit.url}/v1/audit", params=params, headers=bearer())
    response.raise_for_status()
    return list(response.json()["records"])


def rows_naming(database: Path, text: str) -> list[tuple[str, tuple[Any, ...]]]:
    """Every row of every table of the SQLite file that holds `text` in any column."""
    with sqlite3.connect(database) as db:
        tables = [row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return [
            (table, row)
            for table in tables
            for row in db.execute(f"SELECT * FROM {table}")  # noqa: S608 (names from sqlite_master)
            if any(text in str(value) for value in row)
        ]


def test_each_outcome_reaches_the_ledger_and_an_erasure_leaves_no_id_in_the_outbox(
    start_service: Any,
    receivers: Receivers,
    producer: KafkaProducer,
    topic_prefix: str,
    kafka_bootstrap: str,
    tmp_path: Path,
) -> None:
    service = delivery(start_service)
    audit = start_service("audit").wait_ready()
    mailer = receiver(receivers)
    put_destination(service, "mailer", mailer)
    topics = Topics(producer, topic_prefix)
    topics.consent(CUSTOMER, granted=True, sequence=1)
    topics.membership(CUSTOMER, "joined")
    wait_for(mailer.bodies, what="the join")
    database = tmp_path / "data" / "delivery.db"
    # Before the erasure the store holds the id, the consent change it applied among it.
    assert {"consent", "consent_inputs", "deliveries"} <= {
        table for table, _ in rows_naming(database, CUSTOMER)
    }
    topics.erasure(CUSTOMER)
    wait_for(lambda: len(mailer.bodies()) == 2, what="the erasure's leave")

    records = wait_for(lambda: len(got := ledger(audit, "delivery_outcome")) == 2 and got, what="2 outcomes")
    payloads = [r["payload"] for r in records]
    assert [(p["action"], p["reason"], p["status"]) for p in payloads] == [
        ("joined", "rule_matched", "delivered"),
        ("left", "erased", "delivered"),
    ]
    assert {(p["destination_id"], p["segment_id"], p["attempts"]) for p in payloads} == {("mailer", "vip", 1)}
    # The ledger's pseudonym of the customer (found by customer_id), not the destination's.
    (membership,) = ledger(audit, "membership_change")
    assert {r["subject"] for r in records} == {membership["subject"]}
    assert membership["subject"] not in {b["subject"] for b in mailer.bodies()}

    # Neither the outbox (delivered rows included), nor the bytes of the store and its log, nor
    # the outcomes topic keeps the id.
    assert rows_naming(database, CUSTOMER) == []
    for path in database.parent.glob("delivery.db*"):
        assert CUSTOMER.encode() not in path.read_bytes(), path
    outcomes = read_topic(kafka_bootstrap, topic_prefix + "delivery.outcomes", 2)
    assert not any(CUSTOMER.encode() in value for value in outcomes)


def test_propagation_the_access_export_and_the_ropa_show_the_destinations(
    start_service: Any, receivers: Receivers, producer: KafkaProducer, topic_prefix: str
) -> None:
    service = delivery(start_service)
    # The internal token with only the scopes deploy/make_env.py gives it: enough for these calls.
    peers = {"DELIVERY_URL": service.url, "INTERNAL_TOKEN": "internal-token-01"}
    audit = start_service("audit", **peers).wait_ready()
    closed = f"http://127.0.0.1:{free_port()}"
    consent = start_service("consent", SEGMENTER_URL=closed, AUDIT_URL=audit.url, **peers).wait_ready()
    mailer, down = receiver(receivers), receiver(receivers, fail_first=10**6)
    put_destination(service, "mailer", mailer)
    put_destination(service, "down", down)
    topics = Topics(producer, topic_prefix)
    topics.consent(CUSTOMER, granted=True, sequence=1)
    topics.membership(CUSTOMER, "joined")
    wait_for(mailer.bodies, what="the join at mailer")
    wait_for(lambda: down.attempts, what="an attempt at down")

    url = f"{service.url}/v1/customers/{CUSTOMER}/propagation"
    assert http_client.get(url, headers=bearer("consent-reader-01")).status_code == 403
    shown = http_client.get(url, headers=DSR).json()
    by_id = {d["destination_id"]: d for d in shown["destinations"]}
    assert by_id["mailer"]["processor"] == "Mailer GmbH" and by_id["mailer"]["country"] == "DE"
    (reached,), (pending,) = by_id["mailer"]["segments"], by_id["down"]["segments"]
    assert (reached["segment_id"], reached["held"], reached["last_action"]) == ("vip", True, "joined")
    assert (reached["last_status"], reached["reached"]) == ("delivered", True)
    assert (pending["held"], pending["last_status"], pending["reached"]) == (True, "pending", False)

    export = f"{consent.url}/v1/customers/{CUSTOMER}/export"
    bundle = http_client.get(export, headers=DSR, timeout=30).json()
    assert bundle["destinations"] == shown["destinations"] and bundle["unavailable"] == ["segmenter"]
    ropa = http_client.get(f"{audit.url}/v1/ropa", headers=bearer()).json()
    email = next(a for a in ropa["activities"] if a["purpose"] == "marketing_email")
    named = [r for r in email["recipients"] if r.startswith("destination ")]
    assert len(named) == 2 and all("processor Mailer GmbH, DE, transfer none" in r for r in named)
    assert ropa["unavailable"] == []

    service.kill()  # the export and the RoPA say the delivery service did not answer
    bundle = http_client.get(export, headers=DSR, timeout=30).json()
    assert bundle["destinations"] is None and bundle["unavailable"] == ["segmenter", "delivery"]
    assert http_client.get(f"{audit.url}/v1/ropa", headers=bearer()).json()["unavailable"] == ["delivery"]


def test_each_change_to_a_destination_reaches_the_ledger_without_its_secret(
    start_service: Any, receivers: Receivers, producer: KafkaProducer, topic_prefix: str, kafka_bootstrap: str
) -> None:
    service = delivery(start_service)
    audit = start_service("audit").wait_ready()
    gone = receiver(receivers, fail_first=10**6, status=410)
    put_destination(service, "partner", gone)  # created
    put_destination(service, "partner", gone, expires_on=date.today() + timedelta(days=30), expected=200)
    topics = Topics(producer, topic_prefix)
    topics.consent(CUSTOMER, granted=True, sequence=1)
    topics.membership(CUSTOMER, "joined")
    wait_for(lambda: shown(service, "partner")["status"] == "paused", what="the 410's pause")
    gone.set(fail_first=0)
    put_destination(service, "partner", gone, expected=200)  # resumes it
    wait_for(lambda: shown(service, "partner")["deliveries"] == {"delivered": 1}, what="the resumed join")
    assert http_client.delete(f"{service.url}/v1/destinations/partner", headers=bearer()).status_code == 204

    def changes() -> list[dict[str, Any]]:
        params = {"kind": "destination_change"}
        response = http_client.get(f"{audit.url}/v1/audit", params=params, headers=bearer())
        response.raise_for_status()
        return list(response.json()["records"])

    records = wait_for(lambda: len(got := changes()) == 5 and got, what="5 destination changes")
    payloads = [r["payload"] for r in records]
    assert [(p["change"], p["pending"]) for p in payloads] == [
        ("created", 0),
        ("changed", 0),
        ("paused", 1),  # the join that got the 410 waits
        ("resumed", 1),
        ("deleted", 0),
    ]
    assert {r["subject"] for r in records} == {None}
    assert {p["destination_id"] for p in payloads} == {"partner"}
    assert [p["segments"] for p in payloads] == [["vip"]] * 4 + [[]]
    assert [p["purposes"] for p in payloads] == [[PURPOSE]] * 4 + [[]]
    # Ids and counts only: neither the ledger nor the topic holds the secret or the endpoint.
    published = read_topic(kafka_bootstrap, topic_prefix + "delivery.destinations", 5)
    for text in (gone.secret, gone.url):
        assert text not in str(records) and not any(text.encode() in value for value in published)
