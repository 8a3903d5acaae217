"""The audit service as a real process on the real broker, on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path

import httpx
import pytest

from shared import topics
from shared.embedded import free_port
from shared.events import (
    AuditRecord,
    ConsentChanged,
    ErasureRequested,
    MembershipChanged,
    ModelTrained,
    SegmentDefinition,
)
from shared.topics import TopicNames
from tests.conftest import bearer
from tests.integration.audit.conftest import (
    all_records,
    consent,
    definition,
    erasure,
    membership,
    training,
)
from tests.support import http_client, read_topic, wait_for
from tests.unit.audit.rfc9162 import check_chain, check_signature, mth, verify_consistency, verify_inclusion

SourceEvent = SegmentDefinition | ConsentChanged | MembershipChanged | ErasureRequested | ModelTrained

AUDITOR = bearer("auditor-token-01")


@pytest.fixture(params=["sqlite", "postgresql"])
def database_env(request: pytest.FixtureRequest) -> dict[str, str]:
    if request.param == "sqlite":
        return {}
    url = request.getfixturevalue("postgres_url")
    return {"AUDIT_DB_URL": url.replace("postgresql+psycopg://", "postgresql://")}


def test_records_every_source_event_once_verifiably(
    start_service, sources, database_env, kafka_bootstrap, topic_prefix, service_env
) -> None:
    audit = start_service("audit", AUDIT_CHECKPOINT_INTERVAL_S="1", **database_env).wait_ready()
    assert_auth_and_validation(audit.url)
    customers = [f"c-{i}" for i in range(5)]
    sent: list[SourceEvent] = [definition("eu-high-value"), definition("loyal-sms", ("marketing_sms",))]
    sent += [consent(c) for c in customers] + [membership(c) for c in customers] + [erasure(customers[0])]
    sent += [training()]
    for event in sent + sent[3:6] + [sent[1]]:  # a few delivered twice, a definition republished
        sources.event(event)
    sources.send(topics.CONSENT_CHANGES, "c-0", b'{"not": "a consent change"}')
    sources.send(topics.SEGMENT_DEFINITIONS, "eu-high-value", None)  # the segment is deleted
    sources.flush()

    records = wait_for(
        lambda: (r := all_records(audit.url)) and len(r) == len(sent) + 1 and r, what="records"
    )
    # Ledger order follows each partition's order; topics and partitions interleave.
    recorded = [r["event_id"] for r in records]
    assert sorted(recorded) == sorted([e.event_id for e in sent] + [f"{sent[0].event_id}:deleted"])
    kinds = [r["kind"] for r in records]
    assert kinds.index("segment_defined") < kinds.index("segment_deleted")
    (trained,) = [r for r in records if r["kind"] == "model_trained"]
    assert trained["subject"] is None and trained["payload"]["n_without_consent"] == 10
    assert_records_of_processing(audit.url)
    check_chain(records)
    assert_pseudonymous(records, customers, Path(service_env["DATA_DIR"]), audit.url)

    checkpoint = wait_for(
        lambda: (
            (c := http_client.get(f"{audit.url}/v1/audit/checkpoint", headers=AUDITOR).json())["tree_size"]
            == len(records)
            and c
        ),
        what="a checkpoint over every record",
    )
    check_signature(checkpoint)
    leaves = [bytes.fromhex(r["hash"]) for r in records]
    assert checkpoint["root"] == mth(leaves).hex()
    proof = http_client.get(f"{audit.url}/v1/audit/records/4/proof", headers=AUDITOR).json()
    assert proof["tree_size"] == len(records) and proof["root"] == checkpoint["root"]
    path = [bytes.fromhex(p) for p in proof["path"]]
    assert verify_inclusion(4, len(records), leaves[4], path, bytes.fromhex(checkpoint["root"]))

    consistency = http_client.get(
        f"{audit.url}/v1/audit/consistency", params={"first": 3, "second": len(records)}, headers=AUDITOR
    ).json()
    assert (
        consistency["first_root"] == mth(leaves[:3]).hex()
        and consistency["second_root"] == checkpoint["root"]
    )
    steps = [bytes.fromhex(p) for p in consistency["path"]]
    assert verify_consistency(3, len(records), mth(leaves[:3]), mth(leaves), steps)

    verify = http_client.get(f"{audit.url}/v1/audit/verify", headers=AUDITOR).json()
    assert verify["ok"] and verify["first_bad_seq"] is None and verify["head"] == records[-1]["hash"]
    published = read_topic(kafka_bootstrap, TopicNames(topic_prefix).name(topics.AUDIT_LOG), len(records))
    assert [json.loads(v) for v in published[: len(records)]] == records
    assert all(AuditRecord.model_validate_json(v).subject != "c-0" for v in published)  # the topic's schema
    dead = read_topic(kafka_bootstrap, TopicNames(topic_prefix).dlq(topics.CONSENT_CHANGES), 1)
    assert json.loads(dead[0])["error"] and "customer_id" in json.loads(dead[0])["error"]
    metrics = http_client.get(f"{audit.url}/metrics").text
    assert 'segwarden_audit_records_appended_total{kind="consent_change"} 5.0' in metrics
    assert "segwarden_audit_duplicates_skipped_total 4.0" in metrics
    dlq_topic = TopicNames(topic_prefix).name(topics.CONSENT_CHANGES)
    assert f'segwarden_dead_letters_total{{topic="{dlq_topic}"}} 1.0' in metrics


def test_free_text_and_unknown_fields_never_reach_the_ledger(start_service, sources, service_env) -> None:
    """An e-mail in `source`, `cause_event_id` or an event id, long text, an extra field: none is kept."""
    audit = start_service("audit").wait_ready()
    email, note = "carol@example.com", "called support on Tuesday about her order " + "x" * 150
    changed = consent(email).model_copy(update={"source": email, "policy_version": note})
    cause = {"cause_event_id": f"order:{email}", "event_id": f"{email}-m"}
    moved = membership(email).model_copy(update=cause)
    extra = {**json.loads(consent("c-9").model_dump_json()), "comment": email}
    sources.event(changed)
    sources.event(moved)
    sources.send(topics.CONSENT_CHANGES, "c-9", json.dumps(extra).encode())
    sources.flush()

    records = wait_for(lambda: (r := all_records(audit.url)) and len(r) == 2 and r, what="two records")
    by_kind = {r["kind"]: r["payload"] for r in records}
    assert by_kind["consent_change"]["source"].startswith("hmac:")
    assert by_kind["consent_change"]["policy_version"].startswith("hmac:")
    assert by_kind["membership_change"]["cause_event_id"].startswith("hmac:")
    (kept,) = [r for r in records if r["kind"] == "membership_change"]
    assert kept["event_id"].startswith("hmac:")
    # Asked for by the event's own id, the ledger maps it as it did when recording.
    asked = {"customer_id": email, "kind": "membership_change", "event_id": moved.event_id}
    assert all_records(audit.url, **asked) == [kept]
    assert http_client.get(f"{audit.url}/v1/audit/verify", headers=AUDITOR).json()["ok"]
    stored = b"".join(p.read_bytes() for p in Path(service_env["DATA_DIR"]).glob("audit.db*"))
    assert b"carol" not in stored and b"Tuesday" not in stored and b"comment" not in stored


def assert_pseudonymous(records: list[dict], customers: list[str], data_dir: Path, url: str) -> None:
    """No raw id anywhere; subjects are HMAC-SHA256 under the key in DATA_DIR; lookup by id works."""
    text = json.dumps(records)
    assert not any(f'"{c}"' in text for c in customers)
    key = bytes.fromhex((data_dir / "pseudonym-key").read_text().strip())
    subject = hmac.new(key, b"c-1", hashlib.sha256).hexdigest()
    trail = all_records(url, customer_id="c-1")
    assert [r["kind"] for r in trail] == ["consent_change", "membership_change"]
    assert all(r["subject"] == subject for r in trail)
    only_consent = all_records(url, kind="consent_change")
    assert len(only_consent) == len(customers)
    # One source event's record by its id, as the preference center asks: that record, no other.
    (change,) = [r for r in trail if r["kind"] == "consent_change"]
    one = {"customer_id": "c-1", "kind": "consent_change"}
    assert all_records(url, event_id=change["event_id"], **one) == [change]
    assert all_records(url, event_id=trail[1]["event_id"], **one) == []  # the membership change's


def assert_auth_and_validation(url: str) -> None:
    assert http_client.get(f"{url}/v1/audit").status_code == 401
    assert http_client.get(f"{url}/v1/audit", headers=bearer("consent-reader-01")).status_code == 403
    bad = http_client.get(f"{url}/v1/audit", params={"after_seq": "x"}, headers=AUDITOR)
    assert bad.status_code == 422 and "after_seq" in bad.text
    assert http_client.get(f"{url}/v1/audit/records/5/proof", headers=AUDITOR).status_code == 404
    huge = "9" * 26  # past the ledger's BIGINT: a 422 naming the field, never the driver's overflow
    cases: list[tuple[str, dict[str, str | int], str]] = [
        ("/v1/audit", {"after_seq": huge}, "after_seq"),
        (f"/v1/audit/records/{huge}/proof", {}, "seq"),
        ("/v1/audit/records/0/proof", {"tree_size": huge}, "tree_size"),
        ("/v1/audit/consistency", {"first": 1, "second": huge}, "second"),
    ]
    for path, params, field in cases:
        answer = http_client.get(f"{url}{path}", params=params, headers=AUDITOR)
        assert answer.status_code == 422, (path, answer.text)
        assert answer.json()["detail"][0]["loc"][-1] == field


def assert_records_of_processing(url: str) -> None:
    """Art. 30 records: live segments appear under the purposes they need; deleted ones do not."""
    ropa = http_client.get(f"{url}/v1/ropa", headers=AUDITOR).json()["activities"]
    by_purpose = {a["purpose"]: a for a in ropa}
    assert by_purpose["marketing_sms"]["segments"] == ["loyal-sms"]
    assert by_purpose["marketing_sms"]["recipients"] and by_purpose["marketing_sms"]["retention_days"] == 730
    assert by_purpose["marketing_email"]["segments"] == []
    assert "accountability" in by_purpose
    csv = http_client.get(f"{url}/v1/ropa", params={"format": "csv"}, headers=AUDITOR)
    assert csv.headers["content-type"].startswith("text/csv")
    lines = csv.text.splitlines()
    assert lines[0].startswith("activity,purpose,") and any("loyal-sms" in line for line in lines[1:])


def test_http_answers_while_the_broker_is_away(start_service) -> None:
    audit = start_service("audit", KAFKA_BOOTSTRAP_SERVERS=f"127.0.0.1:{free_port()}")
    wait_for(lambda: _answers(f"{audit.url}/healthz"), what="HTTP")
    ready = http_client.get(f"{audit.url}/readyz")
    assert ready.status_code == 503 and "kafka" in ready.json()["reasons"]
    page = http_client.get(f"{audit.url}/v1/audit", headers=AUDITOR)
    assert page.status_code == 200 and page.json() == {"records": [], "next_after_seq": None}
    assert http_client.get(f"{audit.url}/v1/audit/checkpoint", headers=AUDITOR).json()["tree_size"] == 0


def _answers(url: str) -> bool:
    try:
        return http_client.get(url).status_code == 200
    except httpx.HTTPError:
        return False
