"""Exactly once across redelivery, SIGKILL and restarts; a broker that forgot gets audit.log again."""

from __future__ import annotations

import json
import threading

from kafka.admin import KafkaAdminClient

from shared import topics
from shared.embedded import EmbeddedBroker
from shared.topics import TopicNames
from tests.conftest import bearer
from tests.integration.audit.conftest import all_records, consent, ledger_length, membership
from tests.integration.audit.test_ledger_service import read_topic
from tests.support import http_client, wait_for
from tests.unit.audit.rfc9162 import check_chain, check_signature

AUDITOR = bearer("auditor-token-01")


def produce(sources, count: int, chunk: int = 1) -> list[str]:
    events = [consent(f"c-{i}") if i % 2 else membership(f"c-{i}") for i in range(count)]
    for start in range(0, count, chunk):
        for event in events[start : start + chunk]:
            sources.event(event)
        sources.flush()
    return [e.event_id for e in events]


def verified(url: str) -> dict:
    report = http_client.get(f"{url}/v1/audit/verify", headers=AUDITOR).json()
    assert report["ok"], report
    return report


def test_replay_from_offset_zero_adds_nothing(start_service, sources, kafka_bootstrap, topic_prefix) -> None:
    audit = start_service("audit").wait_ready()
    ids = produce(sources, 40, chunk=40)
    wait_for(lambda: ledger_length(audit.url) == len(ids), what="40 records")
    audit.stop()
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:
        admin.delete_groups([f"{topic_prefix}segwarden-audit"])
    finally:
        admin.close()
    audit.start().wait_ready()
    skipped = "segwarden_audit_duplicates_skipped_total 40.0"
    wait_for(lambda: skipped in http_client.get(f"{audit.url}/metrics").text, what="the replay to be skipped")
    assert verified(audit.url)["length"] == len(ids)


def test_sigkill_mid_stream_loses_and_duplicates_nothing(start_service, sources) -> None:
    audit = start_service("audit").wait_ready()
    ids: list[str] = []
    producer = threading.Thread(target=lambda: ids.extend(produce(sources, 1500, chunk=25)))
    producer.start()
    killed_at = wait_for(lambda: ledger_length(audit.url), what="the first records")
    audit.kill()
    assert killed_at < 1500  # the kill came mid-stream
    producer.join()
    audit.start().wait_ready()
    wait_for(lambda: ledger_length(audit.url) >= len(ids), timeout=120, what="every record after the restart")
    records = all_records(audit.url)
    assert sorted(r["event_id"] for r in records) == sorted(ids)
    check_chain(records)
    assert verified(audit.url)["length"] == len(ids)


def test_a_stack_restart_on_a_fresh_broker_keeps_ledger_key_and_audit_log(
    start_service, sources, topic_prefix
) -> None:
    audit = start_service("audit", AUDIT_CHECKPOINT_INTERVAL_S="1").wait_ready()
    ids = produce(sources, 20, chunk=20)
    wait_for(lambda: ledger_length(audit.url) == len(ids), what="20 records")
    before = http_client.post(f"{audit.url}/v1/audit/checkpoint", headers=AUDITOR).json()
    audit.stop()
    broker = EmbeddedBroker().start()  # the embedded broker forgets everything when it stops
    try:
        audit.env["KAFKA_BOOTSTRAP_SERVERS"] = broker.bootstrap
        audit.start().wait_ready()
        after = http_client.get(f"{audit.url}/v1/audit/checkpoint", headers=AUDITOR).json()
        assert after["public_key"] == before["public_key"] and after["tree_size"] == len(ids)
        check_signature(after)
        records = all_records(audit.url)
        assert verified(audit.url)["length"] == len(ids)
        log_topic = TopicNames(topic_prefix).name(topics.AUDIT_LOG)
        published = [json.loads(v) for v in read_topic(broker.bootstrap, log_topic, len(ids))]
        assert published[: len(ids)] == records
    finally:
        audit.stop()
        broker.stop()
