"""Crash safety and restarts: SIGKILL between commit and publish, a broker that restarts empty, PostgreSQL."""

from __future__ import annotations

import json
import signal
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from shared.embedded import EmbeddedBroker, free_port
from shared.events import ConsentChanged
from tests.conftest import bearer
from tests.integration.consent.conftest import (
    Record,
    choice,
    for_key,
    produce,
    profiling_requests,
    put,
    read_topic,
    topic,
)
from tests.support import http_client, present, wait_for

pytestmark = [pytest.mark.timeout(180), pytest.mark.slow]
PURPOSES = ["marketing_email", "marketing_sms", "personalization", "profiling", "third_party_sharing"]


def _metric(service, name: str) -> float | None:
    try:
        text = http_client.get(f"{service.url}/metrics", timeout=5).text
    except httpx.HTTPError:
        return None
    line = next((line for line in text.splitlines() if line.startswith(name + " ")), None)
    return float(line.split()[1]) if line else None


def _published_ids(service, customers: list[str]) -> list[str]:
    ids = []
    for customer in customers:
        url = f"{service.url}/v1/customers/{customer}/consents/history"
        ids += [
            h["event_id"]
            for h in http_client.get(url, headers=bearer(), timeout=10).json()["history"]
            if h["published"]
        ]
    return ids


def _changes_by_event_id(bootstrap: str, service, expected: set[str]) -> dict[str, list[bytes]]:
    """Every consent.changes record, grouped by event id, once all expected ids arrived."""

    def seen(records) -> bool:
        return expected <= {json.loads(v)["event_id"] for v in present(v for _, v in records)}

    records = read_topic(bootstrap, topic(service, "consent.changes"), seen, timeout=60)
    grouped: dict[str, list[bytes]] = {}
    for value in present(v for _, v in records):
        grouped.setdefault(json.loads(value)["event_id"], []).append(value)
    return grouped


def _burst(service, customers: list[str], rounds: int, published: bool | None = None) -> None:
    """Alternate grants and denials so every request changes the effective state (each one publishes);
    `published`: what every answer must say of its publication (None: either)."""

    def one(args: tuple[str, int]) -> None:
        customer, index = args
        status = "granted" if index % 2 == 0 else "denied"
        for purpose in PURPOSES:
            response = put(service, customer, purpose, choice(status))
            assert response.status_code == 200
            if published is not None:
                assert response.json()["pending_publication"] is not published

    with ThreadPoolExecutor(len(customers)) as pool:
        for index in range(rounds):
            list(pool.map(one, [(c, index) for c in customers]))


def test_sigkill_between_commit_and_publish_loses_nothing_and_duplicates_nothing(
    start_service, kafka_bootstrap
) -> None:
    # The broker is unreachable, so every change stays committed-but-unpublished until the kill.
    service = start_service(
        "consent", KAFKA_BOOTSTRAP_SERVERS=f"127.0.0.1:{free_port()}", CONSENT_PUBLISH_WAIT_S="0.1"
    )
    wait_for(lambda: _metric(service, "segwarden_consent_outbox_pending") is not None, what="HTTP up")
    ready = http_client.get(f"{service.url}/readyz").json()
    assert ready["status"] == "unavailable" and "kafka" in ready["reasons"]
    customers = [f"c-crash-{n}" for n in range(3)]
    _burst(service, customers, rounds=2, published=False)
    expected = _published_ids(service, customers)
    assert len(expected) == 3 * 2 * len(PURPOSES)
    wait_for(
        lambda: (_metric(service, "segwarden_consent_outbox_pending") or 0) >= len(expected),
        what="outbox gauge",
    )
    service.kill()
    service.env["KAFKA_BOOTSTRAP_SERVERS"] = kafka_bootstrap
    service.start().wait_ready()
    wait_for(lambda: _metric(service, "segwarden_consent_outbox_pending") == 0, what="an empty outbox")
    grouped = _changes_by_event_id(kafka_bootstrap, service, set(expected))
    assert set(grouped) == set(expected)
    assert all(len(values) == 1 for values in grouped.values()), "a change was published twice"
    for customer in customers:  # and in order per customer: the last change is the last state

        def has_state(records: list[Record], customer: str = customer) -> bool:
            return bool(for_key(records, customer))

        state = read_topic(kafka_bootstrap, topic(service, "consent.state"), has_state)
        last = json.loads(for_key(state, customer)[-1])
        assert {p: s["status"] for p, s in last["purposes"].items()} == dict.fromkeys(PURPOSES, "denied")


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_sigkill_under_load_publishes_every_change_under_one_event_id(
    start_service, kafka_bootstrap, request, database: str
) -> None:
    env = {}
    if database == "postgresql":
        # The contract's plain postgresql:// URL, mapped to the psycopg driver by the service.
        env["CONSENT_DB_URL"] = request.getfixturevalue("postgres_url").replace(
            "postgresql+psycopg", "postgresql"
        )
    service = start_service("consent", **env).wait_ready()
    customers = [f"c-load-{n}" for n in range(4)]
    _burst(service, customers, rounds=3)
    service.kill()  # right after the last commit: some rows are published, some not, some half-way
    service.start().wait_ready()
    expected = _published_ids(service, customers)
    assert len(expected) == 4 * 3 * len(PURPOSES)
    grouped = _changes_by_event_id(kafka_bootstrap, service, set(expected))
    assert set(grouped) == set(expected)
    # A row published but not yet marked sent is published again under the same event id, unchanged.
    assert all(len(set(values)) == 1 for values in grouped.values())


def test_a_restart_keeps_every_record_and_republishes_consent_state(
    start_service, kafka_bootstrap, customer
) -> None:
    service = start_service("consent").wait_ready()
    assert put(service, customer, "profiling", choice()).status_code == 200
    before = http_client.get(
        f"{service.url}/v1/customers/{customer}/consents/history", headers=bearer()
    ).json()
    read_topic(kafka_bootstrap, topic(service, "consent.state"), lambda r: bool(for_key(r, customer)))
    service.stop()
    service.start().wait_ready()
    after = http_client.get(
        f"{service.url}/v1/customers/{customer}/consents/history", headers=bearer()
    ).json()
    assert after == before
    state = read_topic(
        kafka_bootstrap, topic(service, "consent.state"), lambda r: len(for_key(r, customer)) >= 2
    )
    # The restart republished the state (more than once if the relay also found the topic short
    # of it: the topic is compacted and readers keep the last value, so that is harmless).
    statuses = [json.loads(v)["purposes"]["profiling"]["status"] for v in for_key(state, customer)]
    assert len(statuses) >= 2 and set(statuses) == {"granted"}


def test_a_broker_that_restarts_empty_gets_its_topics_and_state_back(
    start_service, tmp_path, customer
) -> None:
    port = free_port()
    broker = EmbeddedBroker(port, tmp_path / "broker.log").start()
    try:
        service = start_service("consent", KAFKA_BOOTSTRAP_SERVERS=broker.bootstrap).wait_ready()
        assert put(service, customer, "marketing_email", choice()).status_code == 200
        read_topic(broker.bootstrap, topic(service, "consent.state"), lambda r: bool(for_key(r, customer)))
        broker.stop()
        wait_for(lambda: http_client.get(f"{service.url}/readyz").status_code == 503, what="readyz to notice")
        errors = "segwarden_consent_publish_errors_total"
        wait_for(lambda: (_metric(service, errors) or 0) > 0, what="the relay to count failed attempts")
        broker = EmbeddedBroker(port, tmp_path / "broker.log").start()
        service.wait_ready()
        state = read_topic(
            broker.bootstrap, topic(service, "consent.state"), lambda r: bool(for_key(r, customer))
        )
        assert json.loads(for_key(state, customer)[-1])["purposes"]["marketing_email"]["effective"] is True
        assert put(service, customer, "marketing_email", choice("denied")).status_code == 200
        changes = read_topic(
            broker.bootstrap, topic(service, "consent.changes"), lambda r: bool(for_key(r, customer))
        )
        assert [json.loads(v)["status"] for v in for_key(changes, customer)] == ["denied"]
    finally:
        broker.stop()


def test_a_lost_database_is_reported_on_readyz_and_as_503(start_service, postgres_url, customer) -> None:
    import psycopg

    service = start_service("consent", CONSENT_DB_URL=postgres_url).wait_ready()
    assert put(service, customer, "profiling", choice()).status_code == 200
    name = postgres_url.rsplit("/", 1)[1]
    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/test", autocommit=True) as admin:
        admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    ready = wait_for(
        lambda: (r := http_client.get(f"{service.url}/readyz", timeout=10)).status_code == 503 and r.json(),
        what="readyz to report the database",
    )
    assert "database" in ready["reasons"]
    response = put(service, customer, "profiling", choice("denied"))
    assert response.status_code == 503 and "store" in response.json()["detail"]


def test_two_replicas_on_one_database_publish_every_change_once(
    start_service, kafka_bootstrap, postgres_url
) -> None:
    first = start_service("consent", CONSENT_DB_URL=postgres_url).wait_ready()
    second = start_service("consent", CONSENT_DB_URL=postgres_url).wait_ready()
    customers = [f"c-replica-{n}" for n in range(4)]
    # Either replica answers once the change is out (the one without the lease watches the outbox).
    _burst(first, customers[:2], rounds=2, published=True)
    _burst(second, customers[2:], rounds=2, published=True)
    expected = _published_ids(first, customers)
    assert len(expected) == 4 * 2 * len(PURPOSES)
    grouped = _changes_by_event_id(kafka_bootstrap, first, set(expected))
    assert set(grouped) == set(expected)
    assert all(len(values) == 1 for values in grouped.values()), "two relays published the same row"
    first.kill()  # the relaying replica (or not): either way the other one must carry on
    _burst(second, customers[:1], rounds=1)
    later = set(_published_ids(second, customers[:1])) - set(expected)
    assert len(later) == len(PURPOSES)
    assert later <= set(_changes_by_event_id(kafka_bootstrap, second, later))


def _killed(service) -> None:
    assert service.process.wait(20) == -signal.SIGKILL, service.log()


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_a_kill_at_the_after_commit_failpoint_publishes_the_change_exactly_once(
    start_service, kafka_bootstrap, request, customer, database: str
) -> None:
    env = {"FAILPOINTS": "consent.after_commit=kill", "CONSENT_OUTBOX_POLL_INTERVAL_S": "30"}
    if database == "postgresql":
        env["CONSENT_DB_URL"] = request.getfixturevalue("postgres_url")
    service = start_service("consent", **env).wait_ready()
    with pytest.raises(httpx.HTTPError):  # committed, then killed before the answer and the publish
        put(service, customer, "profiling", choice())
    _killed(service)
    del service.env["FAILPOINTS"]
    service.start().wait_ready()
    [granted] = http_client.get(
        f"{service.url}/v1/customers/{customer}/consents/history", headers=bearer()
    ).json()["history"]
    assert granted["published"] and granted["sequence"] is not None
    denial = put(service, customer, "profiling", choice("denied")).json()
    # The relay publishes in commit order: once the later denial is on the topic, so is all before it.
    grouped = _changes_by_event_id(kafka_bootstrap, service, {granted["event_id"], denial["event_id"]})
    changes = [ConsentChanged.model_validate_json(v) for v in grouped[granted["event_id"]]]
    assert len(changes) == 1, "the change was published more than once"
    assert (changes[0].status, changes[0].sequence) == ("granted", granted["sequence"])
    assert len(grouped[denial["event_id"]]) == 1


def test_a_kill_mid_batch_in_the_requests_consumer_records_each_request_once(
    start_service, kafka_bootstrap, customer
) -> None:
    service = start_service("consent", FAILPOINTS="consent.requests_mid_batch=kill@2").wait_ready()
    statuses = ["granted", "denied", "granted"]
    requests = profiling_requests(customer, statuses)
    produce(kafka_bootstrap, topic(service, "consent.requests"), customer, requests)
    _killed(service)  # after recording the second request, before committing the offsets
    del service.env["FAILPOINTS"]
    service.start().wait_ready()
    url = f"{service.url}/v1/customers/{customer}/consents/history"
    history = wait_for(
        lambda: len(h := http_client.get(url, headers=bearer()).json()["history"]) >= 3 and h,
        timeout=60,
        what="the third request after the restart",
    )
    assert [h["status"] for h in history] == statuses  # the redelivered two were "already done"
    expected = {h["event_id"] for h in history}
    grouped = _changes_by_event_id(kafka_bootstrap, service, expected)
    mine = {
        e: v for e, v in grouped.items() if ConsentChanged.model_validate_json(v[0]).customer_id == customer
    }
    # No change beyond the three recorded ones. The relay may have been killed between a publish
    # and marking it sent, so a change can come again, but only as the same record.
    assert set(mine) == expected and all(len(set(values)) == 1 for values in mine.values())
