"""consent.requests, expiry, erasure and export against the real service process and broker."""

from __future__ import annotations

import json
import sqlite3
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from shared.events import (
    ConsentChanged,
    ConsentRequested,
    ConsentStateSnapshot,
    DeadLetter,
    ErasureRequested,
)
from shared.pseudonym import pseudonymize
from tests.conftest import bearer
from tests.integration.consent.conftest import choice, for_key, produce, put, read_topic, tombstoned, topic
from tests.support import http_client, present, wait_for

pytestmark = pytest.mark.timeout(120)


def _history(consent, customer: str) -> list[dict]:
    url = f"{consent.url}/v1/customers/{customer}/consents/history"
    return http_client.get(url, headers=bearer(), timeout=10).json()["history"]


def _request(customer: str, request_id: str, **fields: object) -> bytes:
    # Request ids are de-duplicated across all customers, so each carries its customer's id.
    body = {
        "request_id": f"{customer}-{request_id}",
        "customer_id": customer,
        "purpose": "personalization",
        **choice(),
        **fields,
    }
    return json.dumps(body).encode()


def test_kafka_requests_are_recorded_once_per_request_id(consent, kafka_bootstrap, customer) -> None:
    ConsentRequested.model_validate_json(_request(customer, "r-1"))  # the test's input is a valid request
    produce(kafka_bootstrap, topic(consent, "consent.requests"), customer, [_request(customer, "r-1")] * 3)
    produce(
        kafka_bootstrap,
        topic(consent, "consent.requests"),
        customer,
        [_request(customer, "r-2", status="denied")],
    )
    history = wait_for(lambda: len(h := _history(consent, customer)) >= 2 and h, what="two recorded requests")
    assert [(h["status"], h["method"]) for h in history] == [("granted", "kafka"), ("denied", "kafka")]
    changes = read_topic(
        kafka_bootstrap, topic(consent, "consent.changes"), lambda r: len(for_key(r, customer)) >= 2
    )
    assert [ConsentChanged.model_validate_json(v).status for v in for_key(changes, customer)] == [
        "granted",
        "denied",
    ]


def test_a_kafka_request_records_the_notice_version_it_names(consent, kafka_bootstrap, customer) -> None:
    produce(
        kafka_bootstrap,
        topic(consent, "consent.requests"),
        customer,
        [_request(customer, "r-1", notice_version=1), _request(customer, "r-2", purpose="profiling")],
    )
    history = wait_for(lambda: len(h := _history(consent, customer)) >= 2 and h, what="two recorded requests")
    assert {h["purpose"]: h["notice_version"] for h in history} == {"personalization": 1, "profiling": None}
    state = read_topic(
        kafka_bootstrap,
        topic(consent, "consent.state"),
        lambda r: any(
            len(ConsentStateSnapshot.model_validate_json(v).purposes) >= 2 for v in for_key(r, customer)
        ),
    )
    latest = ConsentStateSnapshot.model_validate_json(for_key(state, customer)[-1])
    assert latest.purposes["personalization"].notice_version == 1
    assert latest.purposes["profiling"].notice_version is None


@pytest.mark.parametrize(
    ("value", "field"),
    [
        (b"{not json", "json"),
        (None, "purpose"),
        (None, "customer_id"),
        (None, "expires_at"),
        (None, "notice_version"),
    ],
)
def test_invalid_requests_go_to_the_dead_letter_topic_naming_the_field(
    consent, kafka_bootstrap, customer, value: bytes | None, field: str
) -> None:
    bad = {
        "purpose": _request(customer, "r-bad", purpose="no_such_purpose"),
        "customer_id": _request("bad id!", "r-bad"),
        "expires_at": _request(customer, "r-bad", expires_at="2020-01-01T00:00:00Z"),
        # The catalog's personalization notice is at version 1: a later one was never shown.
        "notice_version": _request(customer, "r-bad", notice_version=2),
    }
    payload = value if value is not None else bad[field]
    produce(
        kafka_bootstrap, topic(consent, "consent.requests"), customer, [payload, _request(customer, "r-ok")]
    )
    # Dead letters are keyed by the customer's pseudonym, never the raw id.
    key = bytes.fromhex((Path(consent.env["DATA_DIR"]) / "pseudonym-key").read_text().strip())
    pseudonym = pseudonymize(key, customer)
    dlq = read_topic(
        kafka_bootstrap, topic(consent, "consent.requests.dlq"), lambda r: bool(for_key(r, pseudonym))
    )
    assert not for_key(dlq, customer)
    [letter] = [DeadLetter.model_validate_json(v) for v in for_key(dlq, pseudonym)]
    assert field in letter.error.lower() and letter.value == payload.decode()
    assert letter.key_pseudonym == pseudonym and letter.value_bytes == len(payload)
    # One bad record never stops the stream: the valid one after it is recorded.
    assert wait_for(lambda: _history(consent, customer), what="the valid request after the bad one")
    metrics = http_client.get(f"{consent.url}/metrics").text
    assert f'segwarden_dead_letters_total{{topic="{topic(consent, "consent.requests")}"}}' in metrics


def test_a_lapsed_grant_is_denied_and_published_by_the_expiry_job(consent, kafka_bootstrap, customer) -> None:
    expires = datetime.now(UTC) + timedelta(seconds=2)
    assert (
        put(consent, customer, "marketing_email", choice(expires_at=expires.isoformat())).status_code == 200
    )
    changes = read_topic(
        kafka_bootstrap, topic(consent, "consent.changes"), lambda r: len(for_key(r, customer)) >= 2
    )
    expired = ConsentChanged.model_validate_json(for_key(changes, customer)[-1])
    assert (expired.status, expired.previous_status, expired.reason) == ("denied", "granted", "expired")
    assert expired.recorded_at >= expires
    last = _history(consent, customer)[-1]
    assert (last["status"], last["reason"], last["method"], last["published"]) == (
        "denied",
        "expired",
        "expiry",
        True,
    )
    states = http_client.get(f"{consent.url}/v1/customers/{customer}/consents", headers=bearer()).json()[
        "purposes"
    ]
    assert states["marketing_email"]["effective"] is False


def test_a_renewal_is_published_and_the_grant_expires_at_its_new_time(
    consent, kafka_bootstrap, customer
) -> None:
    far, near = (datetime.now(UTC) + timedelta(seconds=s) for s in (3600, 3))
    for expires, published in ((far, True), (near, True), (near, False)):  # grant, renewal, true repeat
        response = put(consent, customer, "marketing_email", choice(expires_at=expires.isoformat()))
        assert response.status_code == 200 and response.json()["published"] is published
    changes = read_topic(
        kafka_bootstrap, topic(consent, "consent.changes"), lambda r: len(for_key(r, customer)) >= 3
    )
    grant, renewal, expired = [ConsentChanged.model_validate_json(v) for v in for_key(changes, customer)]
    assert (renewal.status, renewal.previous_status, renewal.reason) == ("granted", "granted", "user")
    assert (grant.expires_at, renewal.expires_at) == (far, near)
    assert (expired.status, expired.previous_status, expired.reason) == ("denied", "granted", "expired")
    first, second, third = present([grant.sequence, renewal.sequence, expired.sequence])
    assert expired.recorded_at >= near and first < second < third
    history = _history(consent, customer)
    assert [(h["reason"], h["published"]) for h in history] == [
        ("user", True),
        ("user", True),
        ("user", False),
        ("expired", True),
    ]
    state = read_topic(
        kafka_bootstrap, topic(consent, "consent.state"), lambda r: len(for_key(r, customer)) >= 3
    )
    snapshots = [ConsentStateSnapshot.model_validate_json(v).purposes for v in for_key(state, customer)]
    assert [(s["marketing_email"].expires_at, s["marketing_email"].sequence) for s in snapshots] == [
        (far, grant.sequence),
        (near, renewal.sequence),
        (None, expired.sequence),
    ]


def _rows_naming(db: Path, needle: str) -> list[tuple[str, str]]:
    """(table, column) pairs whose stored text or bytes contain `needle`."""
    found = []
    with sqlite3.connect(db) as connection:
        tables = [t for (t,) in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for table in tables:
            columns = [c[1] for c in connection.execute(f"PRAGMA table_info({table})")]
            for column in columns:
                for (value,) in connection.execute(f"SELECT {column} FROM {table}"):
                    text = value.decode(errors="replace") if isinstance(value, bytes) else str(value)
                    if needle in text:
                        found.append((table, column))
    return found


def test_erasure_forgets_the_customer_and_tells_everyone(consent, kafka_bootstrap, customer) -> None:
    for purpose in ("marketing_email", "profiling"):
        assert put(consent, customer, purpose, choice()).status_code == 200
    assert (
        http_client.post(
            f"{consent.url}/v1/customers/{customer}/erasure", headers=bearer("consent-writer-01")
        ).status_code
        == 403
    )
    response = http_client.post(
        f"{consent.url}/v1/customers/{customer}/erasure", headers=bearer("dsr-officer-0001")
    )
    assert response.status_code == 202
    erasure_id = response.json()["event_id"]
    requests = read_topic(
        kafka_bootstrap, topic(consent, "erasure.requests"), lambda r: bool(for_key(r, customer))
    )
    [request] = [ErasureRequested.model_validate_json(v) for v in for_key(requests, customer)]
    assert request.event_id == erasure_id
    state = read_topic(kafka_bootstrap, topic(consent, "consent.state"), lambda r: tombstoned(r, customer))
    assert tombstoned(state, customer)  # the tombstone is the last word
    changes = read_topic(
        kafka_bootstrap, topic(consent, "consent.changes"), lambda r: len(for_key(r, customer)) >= 4
    )
    erased = [ConsentChanged.model_validate_json(v) for v in for_key(changes, customer)][2:]
    assert sorted((c.purpose, c.status, c.reason) for c in erased) == [
        ("marketing_email", "denied", "erasure"),
        ("profiling", "denied", "erasure"),
    ]
    assert _history(consent, customer) == []
    db = Path(consent.env["DATA_DIR"]) / "consent.db"
    assert wait_for(lambda: not _rows_naming(db, customer), what="no row naming the erased customer")
    with sqlite3.connect(db) as connection:
        proofs = connection.execute(
            "SELECT subject, records_deleted FROM erasures WHERE event_id = ?", (erasure_id,)
        )
        [(subject, deleted)] = proofs.fetchall()
    assert len(subject) == 64 and deleted >= 4


def test_export_bundles_consents_history_and_says_which_peer_is_unavailable(consent, customer) -> None:
    # The module's service points SEGMENTER_URL/AUDIT_URL at closed ports (see consent_env).
    assert put(consent, customer, "marketing_email", choice()).status_code == 200
    url = f"{consent.url}/v1/customers/{customer}/export"
    assert http_client.get(url, headers=bearer("consent-reader-01")).status_code == 403
    bundle = http_client.get(url, headers=bearer("dsr-officer-0001"), timeout=30).json()
    assert bundle["customer_id"] == customer
    assert bundle["consents"]["marketing_email"]["effective"] is True
    assert [h["purpose"] for h in bundle["history"]] == ["marketing_email"]
    assert bundle["segments"] is None and bundle["audit"] is None
    assert sorted(bundle["unavailable"]) == ["audit", "delivery", "segmenter"]


def test_erasures_right_after_signup_are_each_published_once(consent, kafka_bootstrap) -> None:
    """Issue 12's workload end to end (the exact interleaving that lost rows is in test_store)."""
    customers = [f"c-signup-{uuid.uuid4().hex[:8]}" for _ in range(40)]

    def signup_then_erase(customer: str) -> str:
        assert put(consent, customer, "marketing_email", choice()).status_code == 200
        url = f"{consent.url}/v1/customers/{customer}/erasure"
        response = http_client.post(url, headers=bearer("dsr-officer-0001"), timeout=10)
        assert response.status_code == 202
        return response.json()["event_id"]

    with ThreadPoolExecutor(8) as pool:
        erasure_ids = dict(zip(customers, pool.map(signup_then_erase, customers), strict=True))

    def all_arrived(records) -> bool:
        return set(customers) <= {k for k, _ in records}

    requests = read_topic(kafka_bootstrap, topic(consent, "erasure.requests"), all_arrived, timeout=60)
    published = [ErasureRequested.model_validate_json(v) for k in erasure_ids for v in for_key(requests, k)]
    assert sorted(r.event_id for r in published) == sorted(erasure_ids.values())
    state = read_topic(
        kafka_bootstrap,
        topic(consent, "consent.state"),
        lambda r: all(tombstoned(r, c) for c in customers),
        timeout=30,
    )
    assert [c for c in customers if not tombstoned(state, c)] == []
