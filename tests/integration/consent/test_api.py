"""The consent HTTP API against the real service process and broker: auth, validation, GPC, history."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from shared.events import ConsentChanged, ConsentStateSnapshot
from tests.conftest import bearer
from tests.integration.consent.conftest import choice, for_key, put, read_topic, topic
from tests.support import http_client

pytestmark = pytest.mark.timeout(120)

ENDPOINTS = [
    ("GET", "/v1/purposes", "consent:read"),
    ("GET", "/v1/customers/c-1/consents", "consent:read"),
    ("GET", "/v1/customers/c-1/consents/history", "consent:read"),
    ("PUT", "/v1/customers/c-1/consents/marketing_email", "consent:write"),
    ("POST", "/v1/customers/c-1/erasure", "dsr"),
    ("GET", "/v1/customers/c-1/export", "dsr"),
]


@pytest.mark.parametrize(("method", "path", "scope"), ENDPOINTS)
def test_every_endpoint_wants_a_known_token_with_its_scope(
    consent, method: str, path: str, scope: str
) -> None:
    url = consent.url + path
    body = choice() if method == "PUT" else None
    assert http_client.request(method, url, json=body).status_code == 401
    assert http_client.request(method, url, json=body, headers=bearer("not-a-known-token")).status_code == 401
    lacking = "auditor-token-01"  # audit:read only
    response = http_client.request(method, url, json=body, headers=bearer(lacking))
    assert response.status_code == 403 and scope in response.json()["detail"]


def _field_errors(response: httpx.Response) -> list[str]:
    assert response.status_code == 422, response.text
    return [str(error["loc"][-1]) for error in response.json()["detail"]]


@pytest.mark.parametrize(
    ("customer_id", "purpose", "body", "field"),
    [
        ("c 1", "marketing_email", choice(), "customer_id"),
        ("c-1", "no_such_purpose", choice(), "purpose"),
        ("c-1", "Bad-Purpose", choice(), "purpose"),
        ("c-1", "marketing_email", choice("maybe"), "status"),
        ("c-1", "marketing_email", choice(jurisdiction="MARS"), "jurisdiction"),
        ("c-1", "marketing_email", choice(expires_at="2020-01-01T00:00:00Z"), "expires_at"),
        ("c-1", "marketing_email", choice(expires_at="2099-01-01T00:00:00"), "expires_at"),
        ("c-1", "marketing_email", choice(expires_at="4102444800"), "expires_at"),  # epoch seconds as text
        ("c-1", "marketing_email", choice(colour="blue"), "colour"),
        ("c-1", "marketing_email", {"status": "granted"}, "source"),
    ],
)
def test_bad_input_gets_422_naming_the_field(consent, customer_id, purpose, body, field) -> None:
    assert field in _field_errors(put(consent, customer_id, purpose, body))


def test_unknown_purpose_is_named_with_the_known_ones(consent) -> None:
    response = put(consent, "c-1", "no_such_purpose", choice())
    message = response.json()["detail"][0]["msg"]
    assert "no_such_purpose" in message and "marketing_email" in message


def test_purposes_lists_the_shipped_catalog(consent) -> None:
    purposes = http_client.get(f"{consent.url}/v1/purposes", headers=bearer("consent-reader-01")).json()[
        "purposes"
    ]
    by_id = {p["id"]: p for p in purposes}
    assert set(by_id) == {
        "marketing_email",
        "marketing_sms",
        "personalization",
        "profiling",
        "third_party_sharing",
    }
    assert by_id["third_party_sharing"]["sale_or_share"] is True
    assert all(set(p["defaults"].values()) == {"denied"} for p in purposes)
    assert all(p["lawful_basis"] and p["retention_days"] > 0 for p in purposes)


def test_without_records_every_purpose_is_denied(consent, customer) -> None:
    body = http_client.get(
        f"{consent.url}/v1/customers/{customer}/consents", headers=bearer("consent-reader-01")
    ).json()
    assert body["customer_id"] == customer
    purposes = ("marketing_email", "marketing_sms", "personalization", "profiling", "third_party_sharing")
    states = {p: (s["status"], s["effective"]) for p, s in body["purposes"].items()}
    assert states == dict.fromkeys(purposes, ("denied", False))


def test_a_grant_is_stored_published_and_read_back(consent, kafka_bootstrap, customer) -> None:
    expires = (datetime.now(UTC) + timedelta(days=30)).isoformat()
    response = put(
        consent, customer, "marketing_email", choice(expires_at=expires), **{"User-Agent": "shop/1.0"}
    )
    assert response.status_code == 200, response.text
    record = response.json()
    assert (record["status"], record["reason"], record["method"], record["published"]) == (
        "granted",
        "user",
        "api",
        True,
    )
    assert record["previous_status"] is None and record["ip_truncated"] == "127.0.0.0"
    assert record["user_agent"] == "shop/1.0"
    states = http_client.get(f"{consent.url}/v1/customers/{customer}/consents", headers=bearer()).json()[
        "purposes"
    ]
    assert (
        states["marketing_email"]["effective"] is True
        and states["marketing_email"]["source"] == "preference-center"
    )
    changes = read_topic(
        kafka_bootstrap, topic(consent, "consent.changes"), lambda r: bool(for_key(r, customer))
    )
    [change] = [ConsentChanged.model_validate_json(v) for v in for_key(changes, customer)]
    assert change.event_id == record["event_id"] and change.status == "granted"
    assert change.expires_at == datetime.fromisoformat(expires)
    state = read_topic(kafka_bootstrap, topic(consent, "consent.state"), lambda r: bool(for_key(r, customer)))
    snapshot = ConsentStateSnapshot.model_validate_json(for_key(state, customer)[-1])
    assert set(snapshot.purposes) == set(states) and snapshot.purposes["marketing_email"].effective
    metrics = http_client.get(f"{consent.url}/metrics").text
    assert (
        'segwarden_consent_changes_total{published="true",purpose="marketing_email",'
        'reason="user",status="granted"}' in metrics
    )
    assert "segwarden_consent_outbox_oldest_age_seconds" in metrics


def test_a_repeated_choice_is_in_history_but_not_published(consent, kafka_bootstrap, customer) -> None:
    assert put(consent, customer, "marketing_sms", choice("denied")).json()["published"] is False
    assert put(consent, customer, "marketing_sms", choice("granted")).json()["published"] is True
    assert (
        put(consent, customer, "marketing_sms", choice("granted", source="app")).json()["published"] is False
    )
    last = put(consent, customer, "marketing_sms", choice("denied")).json()
    assert last["published"] is True and last["previous_status"] == "granted"
    history = http_client.get(
        f"{consent.url}/v1/customers/{customer}/consents/history", headers=bearer()
    ).json()
    assert [(h["status"], h["source"]) for h in history["history"]] == [
        ("denied", "preference-center"),
        ("granted", "preference-center"),
        ("granted", "app"),
        ("denied", "preference-center"),
    ]
    changes = read_topic(
        kafka_bootstrap, topic(consent, "consent.changes"), lambda r: len(for_key(r, customer)) >= 2
    )
    published = [json.loads(v)["event_id"] for v in for_key(changes, customer)]
    assert published == [h["event_id"] for h in history["history"] if h["published"]]
    states = read_topic(
        kafka_bootstrap, topic(consent, "consent.state"), lambda r: len(for_key(r, customer)) >= 2
    )
    assert len(for_key(states, customer)) == 2


def test_gpc_denies_every_sale_or_share_purpose(consent, kafka_bootstrap, customer) -> None:
    assert put(consent, customer, "third_party_sharing", choice("granted")).status_code == 200
    response = put(consent, customer, "marketing_email", choice("granted"), **{"Sec-GPC": "1"})
    body = response.json()
    assert body["purpose"] == "marketing_email" and body["status"] == "granted"
    [gpc] = body["also_recorded"]
    assert (gpc["purpose"], gpc["status"], gpc["reason"], gpc["method"]) == (
        "third_party_sharing",
        "denied",
        "gpc",
        "gpc",
    )
    # Granting a sale/share purpose under GPC records a GPC denial instead.
    override = put(consent, customer, "third_party_sharing", choice("granted"), **{"Sec-GPC": "1"}).json()
    assert (override["status"], override["reason"], override["published"]) == ("denied", "gpc", False)
    changes = read_topic(
        kafka_bootstrap, topic(consent, "consent.changes"), lambda r: len(for_key(r, customer)) >= 3
    )
    gpc_changes = [ConsentChanged.model_validate_json(v) for v in for_key(changes, customer)]
    assert [(c.purpose, c.status, c.reason) for c in gpc_changes] == [
        ("third_party_sharing", "granted", "user"),
        ("marketing_email", "granted", "user"),
        ("third_party_sharing", "denied", "gpc"),
    ]


def test_history_is_oldest_first_and_never_rewritten(consent, customer) -> None:
    statuses = ["granted", "denied", "granted", "denied", "denied"]
    ids = [put(consent, customer, "profiling", choice(s)).json()["event_id"] for s in statuses]
    history = http_client.get(
        f"{consent.url}/v1/customers/{customer}/consents/history", headers=bearer()
    ).json()["history"]
    assert [h["event_id"] for h in history] == ids
    assert [h["status"] for h in history] == statuses
    assert [h["previous_status"] for h in history] == [None, "granted", "denied", "granted", "denied"]
    stamps = [h["recorded_at"] for h in history]
    assert stamps == sorted(stamps)


def test_auth_is_checked_before_the_path_so_nothing_leaks(consent) -> None:
    url = f"{consent.url}/v1/customers/bad id!/consents/no_such_purpose"
    assert http_client.put(url, json={}).status_code == 401
    assert http_client.put(url, json={}, headers=bearer("consent-reader-01")).status_code == 403
    assert http_client.put(url, json={}, headers=bearer("consent-writer-01")).status_code == 422
